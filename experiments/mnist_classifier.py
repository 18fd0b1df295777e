"""egm's MNIST feature network (egm.eval.features, §20.14): train it, test it, ship its weights.

A LeNet-style CNN (conv 5x5x32, pool, conv 5x5x64, pool, dense 128, 10 logits) trained with
Adam (learning rate decayed linearly to 0) on grey MNIST images in [0, 1], no augmentation.
The ``default`` preset trains on all 60,000 training images and evaluates the 10,000 test
images; ``validation`` trains on the first 50,000 and reports the error on the last 10,000
(how the schedule was chosen: BUILD_NOTES.md).  The weights go to
``<workdir>/mnist_classifier.npz``; ``--export true`` also copies them into the package
(egm/eval/_weights/mnist_classifier.npz), where egm.eval.features loads them.

    python experiments/mnist_classifier.py --data_dir ../shared/data/mnist --export true
    python experiments/mnist_classifier.py --config validation --data_dir ../shared/data/mnist
    python experiments/mnist_classifier.py --config tiny          # smoke test, seconds
"""

from __future__ import annotations

import dataclasses
import shutil
from typing import NamedTuple

import numpy as np

from egm import data, eval, run, train
from egm.errors import ConfigError
from egm.eval import features as fnet
from egm.run.config import RunFields, at_least, field, greater_than, one_of


@dataclasses.dataclass(frozen=True)
class Config(RunFields):
    source: str = field("auto", check=one_of("embedded", "idx", "tfds", "auto"))
    data_dir: str | None = field(None, help="folder of the four MNIST IDX files")
    train_split: str = field("train_full", check=one_of("train_full", "train"),
                             help="all 60,000, or the first 50,000 (valid held out)")  # fmt: skip
    n_train: int | None = field(None, check=at_least(1), help="use only the first n_train")
    epochs: int = field(6, check=at_least(1))
    batch_size: int = field(100, check=at_least(1))
    learning_rate: float = field(1e-3, check=greater_than(0), sweep=True, help="Adam")
    export: bool = field(False, eval_only=True, help="copy the weights into egm/eval/_weights/")
    workdir: str = field("runs/mnist_classifier", eval_only=True)

    def check(self) -> None:
        if self.source == "embedded" and (self.data_dir or self.train_split == "train_full"):
            raise ConfigError("the embedded subset has no --data_dir and only 4000 training "
                              "images: use --train_split train, or --source idx/auto")  # fmt: skip


# fmt: off
PRESETS = {
    "default": Config(),
    "validation": Config(train_split="train", workdir="runs/mnist_classifier_validation"),
    "tiny": Config(source="embedded", train_split="train", n_train=500, epochs=1,
                   progress=False, workdir="runs/mnist_classifier_tiny"),
}
# fmt: on


class Data(NamedTuple):
    train: tuple[np.ndarray, np.ndarray]
    held_out: tuple[np.ndarray, np.ndarray] | None  # the validation images, if not trained on
    test: tuple[np.ndarray, np.ndarray]
    source: str


def load(cfg: Config) -> Data:
    def split(name):
        d = data.load_mnist(name, source=cfg.source, data_dir=cfg.data_dir)
        return (d.x, d.y), d.source

    (x, y), source = split(cfg.train_split)
    held = split("valid")[0] if cfg.train_split == "train" else None
    return Data((x[: cfg.n_train], y[: cfg.n_train]), held, split("test")[0], source)


def optimizer(cfg: Config, d: Data):
    n_steps = cfg.epochs * (len(d.train[1]) // cfg.batch_size)
    return train.adam(cfg.learning_rate, lr_multiplier=train.linear_decay(n_steps))


def init(cfg: Config, d: Data, key, done):
    return train.init_state(fnet.init_feature_params(key), optimizer(cfg, d))


def step(cfg: Config, d: Data, done):
    # the im2col convolutions: XLA:CPU's convolution gradients are ~20x slower (features.py)
    logits = lambda p, x: fnet.apply(p, x, conv_impl="matmul")[1]  # noqa: E731
    return train.make_step(train.classifier_objective(logits), optimizer(cfg, d))


def error(params, xy) -> float:
    return train.classification_error(lambda p, x: fnet.apply(p, x)[1], params, *xy)


def monitor(cfg: Config, d: Data, state, key, epoch: int) -> dict:
    return {} if d.held_out is None else {"valid_error": error(state.params, d.held_out)}


def evaluate(cfg: Config, d: Data, done, key) -> dict:
    params, n_test = done["train"].params, len(d.test[1])
    err = error(params, d.test)
    out = {"test_error": err, "test_error_stderr": float(np.sqrt(err * (1 - err) / n_test)),
           "n_test": n_test, "n_train": len(d.train[1]), "data": d.source,
           "weights": f"{cfg.workdir}/mnist_classifier.npz"}  # fmt: skip
    if d.held_out is not None:
        out["valid_error"] = error(params, d.held_out)
    return out


def pictures(cfg: Config, d: Data, done, key) -> dict:
    (x, y), net = d.test, fnet.FeatureNet(done["train"].params, "", {})
    wrong = x[np.asarray(fnet.class_probs(x, net)).argmax(1) != y][:100]
    title = f"the first {len(wrong)} misclassified test digits"
    return {"misclassified.png": (eval.tile_images(wrong, (28, 28)), title)} if len(wrong) else {}


def files(cfg: Config, d: Data, done, path) -> None:
    meta = {"experiment": "mnist_classifier", "config": run.config.to_dict(cfg), "data": d.source,
            "n_train": len(d.train[1]), **describe(cfg)}  # fmt: skip
    fnet.save_feature_net(path / "mnist_classifier.npz", done["train"].params, meta)
    if cfg.export:
        fnet.DEFAULT_WEIGHTS.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path / "mnist_classifier.npz", fnet.DEFAULT_WEIGHTS)
        run.log(f"exported the weights to {fnet.DEFAULT_WEIGHTS}")


def describe(cfg: Config) -> dict:
    return {
        "model": "CNN conv5x5x32-pool-conv5x5x64-pool-dense128-10 (egm.eval.features)",
        "training": f"Adam lr {cfg.learning_rate} (linear decay to 0), {cfg.epochs} epochs, "
        f"batch {cfg.batch_size}, on MNIST {cfg.train_split}"
        + (f" (its first {cfg.n_train})" if cfg.n_train else "")
        + ", no augmentation",
    }


def data_check(cfg: Config, xy) -> None:
    train.classifier.classifier_data_check(784, 10)(xy)
    data.check_unit_interval(xy[0], "training images")


EXPERIMENT = run.Experiment(
    name="mnist_classifier", presets=PRESETS, load=load,
    phases=lambda cfg: [run.Phase("train", init, step, data_check=data_check, monitor=monitor)],
    evaluate=evaluate, pictures=pictures, files=files, describe=describe,
    divergence_hint=lambda c: f"(Adam learning_rate={c.learning_rate})",
)  # fmt: skip

if __name__ == "__main__":
    run.main(EXPERIMENT)
