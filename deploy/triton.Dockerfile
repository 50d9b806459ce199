# Triton with what adrank's Python-backend model needs (ONNX Runtime, numpy 1.x: see constraints.txt).
# docker build -f deploy/triton.Dockerfile -t adrank-triton:latest deploy
FROM nvcr.io/nvidia/tritonserver:24.09-py3
RUN pip install --no-cache-dir "numpy<2" onnxruntime
