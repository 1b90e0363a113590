"""Model: choose the data set, then pick a bundled network, train one, or upload .pt / ONNX / .nnet."""
from __future__ import annotations

import tempfile
from pathlib import Path

import streamlit as st

from nnmend.app import widgets as w
from nnmend.app.registry import PageSpec
from nnmend.app.state import DATASETS, bundled_models, dataset, workbench

PAGE = PageSpec("Model", section="Network", order=10, icon=":material/deployed_code:",
                summary="data set and network: bundled, trained here, or uploaded")
UPLOAD_TYPES = ("pt", "onnx", "nnet")
DEFAULT_MODEL = "shnn_mlp_mnist"


def _train(arch: str, train, epochs: int, batch_size: int, lr: float, seed: int):
    import torch

    from nnmend.nets import build
    from nnmend.train import fit

    torch.manual_seed(seed)
    net = build(arch)
    hist = fit(net, train, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, desc=f"train {arch}")
    net.nnmend_meta = {"arch": arch, "seed": seed, "epochs": epochs, "input_shape": list(train.x.shape[1:])}
    return net, hist


def _load_upload(name: str, data: bytes):
    from nnmend.errors import ModelError, NnmendError
    from nnmend.io import load_network

    suffix = Path(name).suffix.lower()
    if suffix.lstrip(".") not in UPLOAD_TYPES:
        raise ModelError(f"{name}: unsupported file type {suffix or '(none)'}; upload .pt, .onnx or .nnet")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / Path(name).name
        path.write_bytes(data)
        try:
            return load_network(path)
        except NnmendError as exc:  # name the upload, not the temporary copy
            raise type(exc)(str(exc).replace(str(path), path.name)) from None


def render() -> None:
    from nnmend.nets import ZOO, named_layers, pretrained

    wb = workbench()
    st.title("Model")
    c1, c2 = st.columns(2)
    ds = c1.selectbox("data set", DATASETS, index=DATASETS.index(wb.dataset), key="model_dataset",
                      help="mnist is bundled; digits comes with scikit-learn; fashion-mnist needs the Debian package")
    n_eval = c2.number_input("evaluation samples (first N of the test set)", 10, 10000, wb.n_eval, step=100, key="model_n_eval")
    if ds != wb.dataset or n_eval != wb.n_eval:
        with w.guard(f"Loading {ds}"):
            dataset(ds, "test")
            if ds != wb.dataset and wb.model is not None:
                st.warning(f"data set changed to {ds}: load a network for it")
                wb.clear()
            wb.dataset, wb.n_eval = ds, int(n_eval)
            if wb.model is not None:
                wb.clean_accuracy = wb.accuracy(wb.model)

    src = st.radio("source", ["bundled", "train", "upload"], horizontal=True, key="model_source")
    if src == "bundled":
        names = bundled_models()
        name = st.selectbox("bundled network", names, key="model_bundled",
                            index=names.index(DEFAULT_MODEL) if DEFAULT_MODEL in names else 0)
        if st.button("Load", key="model_load", type="primary"):
            with w.guard(f"Loading {name}"):
                wb.set_model(pretrained(name), name)
    elif src == "train":
        c = st.columns(5)
        arch = c[0].selectbox("architecture", sorted(ZOO), index=sorted(ZOO).index("shnn_mlp"), key="train_arch")
        epochs = c[1].number_input("epochs", 1, 100, 10, key="train_epochs")
        n_train = c[2].number_input("training samples", 100, 60000, 60000, step=1000, key="train_n")
        lr = c[3].number_input("learning rate", 1e-5, 1.0, 1e-3, format="%.5f", key="train_lr")
        seed = c[4].number_input("seed", 0, 10**6, 0, key="train_seed")
        if st.button("Train", key="train_run", type="primary", disabled=w.busy("train")):
            with w.guard("Training"):
                w.start_job("train", f"train {arch}", _train, arch, wb.train_data().subset(int(n_train)),
                            int(epochs), 128, float(lr), int(seed))
        job = w.job_panel("train")
        if job is not None:
            net, hist = job.value
            with w.guard("Using the trained network"):
                wb.set_model(net, f"{arch} trained here (seed {int(seed)}, {int(epochs)} epochs, {job.seconds:.0f} s)")
                st.caption(f"final training loss {hist.loss[-1]:.4f}")
    else:
        up = st.file_uploader("network file", type=list(UPLOAD_TYPES), key="model_upload")
        if up is not None and st.button("Load upload", key="model_load_upload", type="primary"):
            with w.guard(f"Loading {up.name}"):
                wb.set_model(_load_upload(up.name, up.getvalue()), up.name)

    if wb.model is None:
        st.info("No network loaded.")
        return
    st.success(f"network: **{wb.model_label}** · clean accuracy **{100 * wb.clean_accuracy:.2f}%** "
               f"on {min(wb.n_eval, len(dataset(wb.dataset, 'test')))} {wb.dataset} test samples")
    rows = [{"layer": n, "type": type(m).__name__, "weight shape": str(tuple(m.weight.shape)),
             "parameters": sum(p.numel() for p in m.parameters())} for n, m in named_layers(wb.model).items()]
    st.dataframe(rows, hide_index=True)


if __name__ == "__main__":
    render()
