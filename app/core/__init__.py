"""The simulated kernel.  ``PAGELAB_CORE=compiled`` runs the mypyc build of its modules
instead of their source (see ``app.core.compiled``); the source is the default."""

from .compiled import activate, selected

if selected() == "compiled":
    activate(__path__)
