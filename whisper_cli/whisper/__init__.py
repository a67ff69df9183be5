"""OpenAI's Whisper: the network, its tokenizer and features, and the reference's long-form
algorithm (the sequential seek loop, and a batched variant over speech chunks).

Read `transcribe.py` first (`WhisperModel`), then `seek_loop.py` and `window.py`, then
`decoding.py` and `model.py`.
"""
