"""
The processes of the benchmarks: AMQP clients and servers on amqptx and on
proton's C{Container}, each run as C{python -m bench.programs.NAME}.

Every program prints JSON lines on its standard output: C{{"event": ...}}
lines to say where it is (listening, ready, measuring), and one
C{{"event": "result", ...}} line with its own measurements.  Anything else
goes to standard error.
"""
