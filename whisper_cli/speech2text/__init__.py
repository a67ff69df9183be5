"""The Speech2Text family: Speech2Text (`facebook/s2t-*`) and Speech2Text2
(`facebook/s2t-wav2vec2-*`) checkpoints behind the same face as a Whisper model."""
