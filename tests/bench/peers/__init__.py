"""The peers of `tests/bench/bench_peers.py`: the same pipeline on Quix Streams and on
faust-streaming, each written as its library's own docs teach."""
