"""``python -m qcore train|models|datasets|fetch-data``: the data and model subcommands."""

import argparse

from qcore.cli import data


def _cli(*argv) -> int:
    parser = argparse.ArgumentParser(prog="qcore")
    data.add_subcommands(parser.add_subparsers(dest="cmd", required=True))
    args = parser.parse_args(list(argv))
    return args.func(args)


def test_cli_train_models_datasets(colour_folder, capsys):
    assert _cli("train", "--model", "mobilenet_v3_small", "--dataset", colour_folder, "--epochs", "1",
                "--image-size", "32") == 0
    out = capsys.readouterr()
    assert "trained: " in out.out and "test accuracy" in out.out and "%" in out.err
    assert _cli("train", "--model", "mobilenet_v3_small", "--dataset", colour_folder, "--epochs", "1",
                "--image-size", "32") == 0
    assert "cached: " in capsys.readouterr().out
    assert _cli("train", "--model", "resnet19", "--dataset", colour_folder) == 2
    assert "unknown model 'resnet19'" in capsys.readouterr().err
    assert _cli("train", "--model", "inception_v3", "--dataset", colour_folder, "--image-size", "32") == 2
    assert _cli("models", "--filter", "resnet18") == 0
    assert "11.7M" in capsys.readouterr().out
    assert _cli("datasets") == 0
    assert "fashion-mnist" in capsys.readouterr().out


def test_cli_fetch_offline_says_how(monkeypatch, capsys):
    import torchvision.datasets as tvd

    def offline(*a, **k):
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz")

    monkeypatch.setattr(tvd, "FashionMNIST", offline)
    assert _cli("fetch-data", "fashion-mnist") == 1
    assert "apt-get install dataset-fashion-mnist" in capsys.readouterr().err

