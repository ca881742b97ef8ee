"""Generation: batched GPT-2 text and Stable Diffusion images behind Azure queues.

``text`` and ``image`` hold the models and generate without any I/O; ``batch`` is the
value a worker generates; ``worker`` is the queue loop that glues them to storage.
"""
