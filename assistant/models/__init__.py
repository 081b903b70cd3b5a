"""Models: the offline catalog, the local registry, installation, and the model host.

Only ``host``, ``llama`` and ``onnx`` import model runtimes, and only inside the host process.
"""
