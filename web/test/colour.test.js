import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { hexToRgb, interpolate, lut, luminance, PAGE_STATES, rgbToHex, scaleIndex, stateColour, STATE_COLOURS, textOn, valueAt } from '../src/lib/colour.js';

describe('lookup tables', () => {
  it('have 256 colours from the scale’s first to its last stop', () => {
    for (const name of ['viridis', 'cividis']) {
      const t = lut(name);
      assert.equal(t.length, 256);
      for (const rgb of t) for (const c of rgb) assert.ok(Number.isInteger(c) && c >= 0 && c <= 255);
    }
    assert.equal(rgbToHex(lut('viridis')[0]), '#440154');
    assert.equal(rgbToHex(lut('viridis')[255]), '#fde725');
  });

  it('grow lighter monotonically (a sequential scale reads as more = brighter)', () => {
    for (const name of ['viridis', 'cividis']) {
      const l = lut(name).map(luminance);
      for (let i = 1; i < l.length; i++) assert.ok(l[i] >= l[i - 1] - 1e-3, `${name} at ${i}`);
    }
  });

  it('refuses an unknown scale by name', () => {
    assert.throws(() => lut('jet'), /unknown colour scale jet/);
  });

  it('interpolate between stops', () => {
    assert.deepEqual(interpolate([[0, 0, 0], [255, 255, 255]], 3), [[0, 0, 0], [128, 128, 128], [255, 255, 255]]);
    assert.deepEqual(hexToRgb('#ff8000'), [255, 128, 0]);
  });
});

describe('scaleIndex', () => {
  it('maps 0 to the bottom and max to the top', () => {
    assert.equal(scaleIndex(0, 100), 0);
    assert.equal(scaleIndex(100, 100), 255);
    assert.equal(scaleIndex(500, 100), 255);
    assert.equal(scaleIndex(5, 0), 0);
  });
  it('spreads small counts apart on the log scale', () => {
    assert.ok(scaleIndex(3, 3000, 'log') > scaleIndex(3, 3000, 'linear'));
    assert.equal(scaleIndex(50, 100, 'linear'), 128);
  });
  it('valueAt inverts it for the legend', () => {
    for (const mode of ['log', 'linear']) {
      assert.ok(Math.abs(valueAt(255, 3000, mode) - 3000) < 1e-6);
      assert.equal(valueAt(0, 3000, mode), 0);
    }
  });
});

describe('text and state colours', () => {
  it('pick black on light and white on dark', () => {
    assert.equal(textOn([253, 231, 37]), '#000000');
    assert.equal(textOn([68, 1, 84]), '#ffffff');
  });
  it('give every page state its own colour', () => {
    const colours = PAGE_STATES.map(stateColour);
    assert.equal(new Set(colours).size, PAGE_STATES.length);
    assert.equal(Object.keys(STATE_COLOURS).length, PAGE_STATES.length);
    assert.equal(stateColour('nonsense'), '#ff00ff');
  });
});
