"""The planning benchmark: a reference fleet (`bench.fleet`) and the script that measures it (`bench.run`)."""
