"""``proofroom doctor``: is this install ready to serve? One line per check, each with its fix
when it fails: Redis and its persistence, the chat tokens, the models, the GPU, free disk for
the store, and the live workers per family and model. Nothing here imports torch: the engine's
facts come from ``python -m engine.probe`` in a child process."""
