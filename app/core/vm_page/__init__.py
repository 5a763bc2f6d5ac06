"""``sys/vm/vm_page.c``, one module per part, lowest first: ``queues`` (the queue lists,
activation, wiring), ``search`` (the coloured free/cache search), ``hash`` (the page hash
table), ``object`` (insertion into objects), ``busy`` (hard and soft busy), ``free``
(``vm_page_free_toq``), ``alloc`` (allocation, grab, vm_wait), ``pagestate`` (valid and
dirty bits, cache, dontneed, hold, wiring quickly, fictitious pages) and ``lookup`` (the
lookups through the hash).  A module calls only the ones below it (import-linter)."""

from app.core.compiled import activate, selected

if selected() == "compiled":
    activate(__path__, "vm_page")
