"""The daemon: one long-running process that owns the models and the conversations.

server.py binds the sockets and runs the lifecycle; api.py holds the HTTP routes; models.py
keeps models resident; queue.py schedules requests per model. It never imports llama_cpp or
onnxruntime: those live in the model host process.
"""
