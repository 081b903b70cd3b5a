"""The daemon: one long-running process that owns the models and the conversations.

server.py is the composition root: it builds the parts (services.py), binds the sockets and runs
the lifecycle. api.py makes the app; the route modules (``*_api.py``) get the parts through the
FastAPI dependencies in deps.py. turns.py runs a turn (reply.py records it, compaction.py keeps
it inside the context); model_manager.py keeps models resident in the model host; queue.py
schedules requests per model; embeddings.py bounds and queues clients' embedding jobs;
status.py answers /health. The native streams (a turn, ingestion) are the typed events of
:mod:`assistant.wire`, shared with the client and the TUI, and sse.py is their one encoder.
It never imports llama_cpp or onnxruntime: those live in the model host process.
"""
