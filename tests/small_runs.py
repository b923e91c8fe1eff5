"""Command-line flags of the smallest real retraining runs the tests use: the tiny network on
16 synthetic 32×32 images, 4 steps of 4 an epoch, in-process loading, CPU — a few seconds.
threads 0 leaves the test process's torch thread count alone (the preset would set it to 1)."""

SMALL_TRAIN = [
    "--num-images", "16", "--image-size", "32", "--crop-size", "32", "--batch-size", "4",
    "--val-images", "2", "--val-batch-size", "2", "--workers", "0", "--threads", "0",
    "--device", "cpu",
]  # fmt: skip
