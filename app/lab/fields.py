"""Units and one-line explanations of every vmstats field and per-CPU event counter, for
the API (sysctls carry their own, in ``app.core.sysctl``)."""

from __future__ import annotations

VMSTATS_HELP: dict[str, tuple[str, str]] = {
    "v_page_size": ("bytes", "size of a page (4096)"),
    "v_page_count": ("pages", "pages handed to the VM at boot, DMA reserve included"),
    "v_free_severe": (
        "pages",
        "below this free+cache, memory is severe (v_free_min/2; 7 below reserved)",
    ),
    "v_free_reserved": (
        "pages",
        "free pages only system/interrupt allocations may take (v_free_min/2 + 7)",
    ),
    "v_free_min": ("pages", "the paging minimum: 64 + v_page_count/200"),
    "v_free_target": ("pages", "the cache scan frees pages up to this many free (2 × v_free_min)"),
    "v_inactive_target": (
        "pages",
        "inactive pages the daemon tries to keep (free count at its start / 16)",
    ),
    "v_paging_wait": (
        "pages",
        "below this free+cache, waiters are released only by the daemon (2 × v_free_min)",
    ),
    "v_paging_start": (
        "pages",
        "below this free+cache, allocations wake the pageout daemon (3 × v_free_min)",
    ),
    "v_paging_target1": ("pages", "the daemon's first target for free+cache (4 × v_free_min)"),
    "v_paging_target2": ("pages", "the daemon's final target for free+cache (5 × v_free_min)"),
    "v_pageout_free_min": (
        "pages",
        "the daemon's own allocations wait below this (v_free_min/4 + 7)",
    ),
    "v_interrupt_free_min": ("pages", "SYSTEM allocations may dig down to this (v_free_min/8 + 7)"),
    "v_dma_pages": ("pages", "pages kept in the DMA reserve"),
    "v_free_count": ("pages", "pages on the free queues"),
    "v_wire_count": ("pages", "wired pages (DMA reserve included)"),
    "v_active_count": (
        "pages",
        "pages on the active queues, plus PQ_HOLD (held-but-freed pages count as active)",
    ),
    "v_inactive_count": ("pages", "pages on the inactive queues"),
    "v_cache_count": ("pages", "clean, reusable pages on the cache queues"),
    "v_dma_avail": ("pages", "unused by this layer"),
    "v_tfree": ("pages", "pages freed (vm_page_free_toq calls)"),
    "v_reactivated": ("pages", "pages taken back from the cache queue to active/inactive"),
    "v_ppwakeups": ("events", "times vm_page_free_wakeup woke vm_wait sleepers"),
    "v_pdwakeups": ("events", "pageout daemon wakeups that led to a scan"),
    "v_pdpages": ("pages", "pages the pageout daemon examined"),
    "v_dfree": ("pages", "pages the pageout daemon freed"),
}
