"""``python -m infra.local``: the local runner (see :mod:`infra.local.runner`).

The import stays under the guard: every function process (multiprocessing's spawn) loads this
module again, and must not load the runner with it.
"""

if __name__ == "__main__":
    import sys

    from infra.local.runner import main

    sys.exit(main())
