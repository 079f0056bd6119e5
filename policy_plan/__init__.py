"""The offline policy plan: the real program evaluated under Pulumi mocks (``program``), the pack's policies
run on the recorded graph the way CrossGuard does (``crossguard``), and the command (``plan``,
``python -m policy_plan``). Not part of the pack the Pulumi CLI loads from ``policy/``: this package needs
the program's SDKs (the main ``.venv``) and pulumi-policy's internals."""
