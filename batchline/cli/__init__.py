"""The composition root: the ``batchline`` command, its subcommands and the process wiring.

Nothing outside this package imports it; it is the only place that puts the HTTP front
doors, the worker agents and the embedded services together.
"""
