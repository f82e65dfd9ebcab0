"""A small CNN (Conv2d, ReLU, MaxPool 2x2) reading digit images rendered here.

    python examples/digits_cnn.py

The images (28x28, generated in code, nothing downloaded) are 5x7 bitmap digits, each rendered
with a random scale, aspect, shift, slant, stroke thickness, blur and noise. The network is two
conv-ReLU-maxpool blocks and two linear layers, trained with fastrnn.optim.Adam. Reports test
accuracy on freshly rendered digits and writes examples/results/digits_cnn.png.
"""

import common

# 5x7 bitmap glyphs of 0-9, one string of 5 pixels per row.
GLYPHS = [
    ["01110", "10001", "10011", "10101", "11001", "10001", "01110"],
    ["00100", "01100", "00100", "00100", "00100", "00100", "01110"],
    ["01110", "10001", "00001", "00010", "00100", "01000", "11111"],
    ["11111", "00010", "00100", "00010", "00001", "10001", "01110"],
    ["00010", "00110", "01010", "10010", "11111", "00010", "00010"],
    ["11111", "10000", "11110", "00001", "00001", "10001", "01110"],
    ["00110", "01000", "10000", "11110", "10001", "10001", "01110"],
    ["11111", "00001", "00010", "00100", "01000", "01000", "01000"],
    ["01110", "10001", "10001", "01110", "10001", "10001", "01110"],
    ["01110", "10001", "10001", "01111", "00001", "00010", "01100"],
]
SIZE = 28


def render(count, generator, torch):
    """count random digit images (count, 1, 28, 28) in [0, 1] and their labels."""
    F = torch.nn.functional
    glyphs = torch.tensor([[[float(c) for c in row] for row in g] for g in GLYPHS])  # (10, 7, 5)
    labels = torch.randint(0, 10, (count,), generator=generator)
    images = glyphs[labels].unsqueeze(1)  # (count, 1, 7, 5)
    # A random affine map per image (scale, aspect, slant, shift) from the glyph to the canvas,
    # sampled bilinearly: theta maps output coordinates to glyph coordinates in [-1, 1].
    u = lambda lo, hi: lo + (hi - lo) * torch.rand(count, generator=generator)  # noqa: E731
    height = u(0.55, 0.85)  # the digit's height, as a fraction of the canvas
    width = height * u(0.5, 0.8)
    slant = u(-0.3, 0.3)
    theta = torch.zeros(count, 2, 3)
    theta[:, 0, 0] = 1 / width
    theta[:, 0, 1] = slant / height
    theta[:, 1, 1] = 1 / height
    theta[:, 0, 2] = u(-0.2, 0.2) / width
    theta[:, 1, 2] = u(-0.12, 0.12) / height
    grid = F.affine_grid(theta, (count, 1, SIZE, SIZE), align_corners=False)
    canvas = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    # Thicker strokes for a random half (a 3x3 maximum), a slight blur, then noise.
    thick = torch.rand(count, generator=generator) < 0.5
    canvas[thick] = F.max_pool2d(canvas[thick], 3, stride=1, padding=1)
    canvas = F.avg_pool2d(canvas, 3, stride=1, padding=1, count_include_pad=False)
    canvas = canvas * u(0.6, 1.0).view(-1, 1, 1, 1) + 0.15 * torch.randn(canvas.shape, generator=generator)
    return canvas.clamp(0, 1), labels


def main():
    args = common.classifier_args(__doc__.split("\n")[0], "digits_cnn.png", epochs=2, quick_train_size=3000)

    import torch

    import fastrnn.nn
    import fastrnn.optim

    from fastrnn.nn import Conv2d, MaxPool2d  # torch.nn's interface, fastrnn's kernels
    print(f"torch threads {torch.get_num_threads()}")

    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    train_x, train_y = render(args.train_size, generator, torch)
    test_x, test_y = render(2000 if not args.quick else 1000, generator, torch)

    model = torch.nn.Sequential(
        Conv2d(1, 16, 3, padding=1), torch.nn.ReLU(), MaxPool2d(2),   # (16, 14, 14)
        Conv2d(16, 32, 3, padding=1), torch.nn.ReLU(), MaxPool2d(2),  # (32, 7, 7)
        torch.nn.Flatten(), torch.nn.Linear(32 * 7 * 7, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))
    steps_per_epoch = len(train_y) // args.batch_size
    opt = fastrnn.optim.Adam(model.parameters(), lr=2e-3)
    schedule = torch.optim.lr_scheduler.OneCycleLR(opt, 2e-3, total_steps=args.epochs * steps_per_epoch)
    common.train_classifier("digits_cnn", model, opt, schedule, (train_x, train_y), (test_x, test_y), args,
                            generator, chance=0.1, title="small CNN on rendered digits")


if __name__ == "__main__":
    main()
