"""`whisper-cli serve`: OpenAI's and DeepInfra's speech APIs over HTTP, on one loaded model
(`pip install '.[server]'` from the checkout: Starlette, uvicorn, python-multipart).

app.py (routes, limits, errors, uvicorn), openai.py and deepinfra.py (one API each),
handling.py (key, upload, job), schemas.py (fields → options, transcripts → JSON),
worker.py (the model's thread: requests batched through the engine).
"""
