"""``alpha-panda bench``: throughput, state size, scaling and the peers' workload.

Pure measurement code; it changes nothing in the pipeline it measures. The
package is split by concern, and importing it (or :mod:`.command`, which the
CLI registers) pulls in nothing heavy: the engine, the pipeline and the live
connectors load only when a scenario runs.

- :mod:`.config`: what to run (:class:`~.config.BenchConfig`), the scenario names;
- :mod:`.harness`: in-memory source and counting sink, the timed flows, timing;
- :mod:`.machine`: hardware, versions and RSS of this process;
- :mod:`.scenarios`: one module per scenario group (``replay``, ``memory``,
  ``scaling``, ``peers``, ``live``);
- :mod:`.peer_tape` and :mod:`.reference`: the peers' tick tape and their
  plain-Python momentum rule;
- :mod:`.targets`: the issue's targets and their checks;
- :mod:`.report`: tables; :mod:`.run`: runs the chosen scenarios;
- :mod:`.command`: the typer command.
"""
