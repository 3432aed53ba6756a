import sys

# Bytecode caches are written for the tests even where PYTHONDONTWRITEBYTECODE is set (as on the development
# machines): otherwise every run, in each xdist worker, compiles srebot's ~600 modules again and re-does
# pytest's assertion rewriting of every test module, 4 s of CPU a worker. The caches are gitignored.
sys.dont_write_bytecode = False
