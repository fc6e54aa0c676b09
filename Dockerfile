# The kb app (Streamlit) and its ingest command, CPU-only, with the embedding model inside.
#   docker build -t kb:local .
#   docker run --rm -p 127.0.0.1:8501:8501 kb:local          (or: docker compose up)
FROM python:3.11-slim

# Nothing at run time may phone home or fetch a model: the Hugging Face libraries stay offline,
# and every library that honours DO_NOT_TRACK or its own switch sends no usage statistics.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    HF_HUB_DISABLE_TELEMETRY=1 \
    DO_NOT_TRACK=1 \
    STREAMLIT_BROWSER_GATHER_USAGE_STATS=false \
    STREAMLIT_SERVER_HEADLESS=true \
    STREAMLIT_SERVER_FILE_WATCHER_TYPE=none

# CPU build of torch first, from the CPU wheel index: otherwise `pip install .` pulls CUDA.
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu

RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin kb

WORKDIR /app
COPY . /app
# rapidocr-onnxruntime asks for the desktop OpenCV build, which needs libGL and X11 libraries
# the slim image lacks; the headless build has the same cv2 module without them.
RUN pip install . \
    && pip uninstall -y opencv-python \
    && pip install --no-deps --force-reinstall opencv-python-headless \
    && rm -rf build ./*.egg-info \
    && mkdir -p /app/data \
    && chown -R kb:kb /app/data

USER kb

# Warm-up: load the packaged embedding model, the BM25 encoder and the OCR models (inside the
# rapidocr wheel) once, offline, so a missing file or library fails the build instead of a
# first query, and nothing is fetched at run time.
RUN python -c "from rag.embeddings import Embedder; from rag.settings import load_settings; \
from rag.sparse import Bm25Encoder; e = Embedder(load_settings()); \
assert len(e.embed(['warm-up'])[0]) == e.dim; Bm25Encoder().document('warm-up'); \
import numpy; from ingest.ocr import OcrEngine; \
OcrEngine().read_image(numpy.full((64, 64, 3), 255, numpy.uint8)); \
print('embedder ready:', e.name, e.dim)"

EXPOSE 8501
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=5 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8501/_stcore/health', timeout=4)"]

CMD ["streamlit", "run", "ui/app.py", "--server.port=8501", "--server.address=0.0.0.0"]
