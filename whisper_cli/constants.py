"""Audio and timing constants of the Whisper models, with the values derived from them."""


def exact_div(x: int, y: int) -> int:
    assert x % y == 0, f"{x} is not divisible by {y}"
    return x // y


# audio
SAMPLE_RATE = 16_000  # Hz
N_FFT = 400  # samples in one STFT window (25 ms)
HOP_LENGTH = 160  # samples between STFT frames (10 ms)
CHUNK_LENGTH = 30  # seconds in one model window
N_SAMPLES = CHUNK_LENGTH * SAMPLE_RATE  # 480 000 samples in one window
N_FRAMES = exact_div(N_SAMPLES, HOP_LENGTH)  # 3000 mel frames in one window
FRAMES_PER_SECOND = exact_div(SAMPLE_RATE, HOP_LENGTH)  # 100 mel frames per second (10 ms)

# encoder output
N_SAMPLES_PER_TOKEN = HOP_LENGTH * 2  # the encoder's stride-2 convolution halves the frames
TOKENS_PER_SECOND = exact_div(SAMPLE_RATE, N_SAMPLES_PER_TOKEN)  # 50 audio tokens per second
