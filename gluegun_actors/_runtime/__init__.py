"""The actor runtime: `pool` runs many Pykka actors on a few worker threads."""
