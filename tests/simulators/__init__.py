"""Simulated CRM APIs for the tests: stateful respx routers that answer as the real CRMs do.

Both simulators share one backdoor interface (see ``tests/simulators/base.py``) so that the
contract suite can run the same behaviours against every provider.
"""
