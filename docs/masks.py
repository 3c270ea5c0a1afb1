"""Draw docs/masks.png: the attention masks of GPT (causal) and BERT (bidirectional), as the model
builds them (`minilm.layers.allowed_keys`), over the bytes of a short text.

    python docs/masks.py            # writes docs/masks.png (needs matplotlib)
"""
from __future__ import annotations

import sys
from pathlib import Path

TEXT = "To be, or"
MASKED_AT = 4  # the position BERT's example hides ("e")


def main(out: Path = Path(__file__).with_name("masks.png")) -> int:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("docs/masks.py: error: matplotlib is not installed (pip install matplotlib)", file=sys.stderr)
        return 2
    from minilm.layers import allowed_keys
    from minilm.outputs import atomic_write

    labels = ["␣" if c == " " else c for c in TEXT]
    masked = [("[M]" if t == MASKED_AT else c) for t, c in enumerate(labels)]  # BERT reads a corrupted copy
    T = len(TEXT)
    fig, axes = plt.subplots(1, 2, figsize=(8.5, 4.6))
    for ax, causal, shown, title in [
            (axes[0], True, labels, "GPT: causal mask\n(each position predicts the next byte)"),
            (axes[1], False, masked, "BERT: bidirectional, no mask\n(predict the original byte at [M])")]:
        allowed = allowed_keys(T, None, "cpu", causal=causal).numpy()  # (T, T), True = query row may see key column
        ax.imshow(allowed, cmap="Blues", vmin=0, vmax=1.4)
        ax.set_xticks(range(T), shown)
        ax.set_yticks(range(T), shown)
        ax.set_xticks([k - 0.5 for k in range(1, T)], minor=True)
        ax.set_yticks([k - 0.5 for k in range(1, T)], minor=True)
        ax.grid(which="minor", color="white", linewidth=1)
        ax.tick_params(which="minor", length=0)
        ax.set_xlabel("key (attended to)")
        ax.set_ylabel("query (position being computed)")
        ax.set_title(title, fontsize=10)
    fig.suptitle("same layers, different mask: which positions each position may attend to (blue)", fontsize=10)
    fig.tight_layout()
    atomic_write(out, lambda handle: fig.savefig(handle, dpi=110, format="png"))
    plt.close(fig)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
