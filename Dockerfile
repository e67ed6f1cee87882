# tlm-bot on CPU. Build:  docker build -t tlm-bot .
# Run:    docker run -d --name tlm-bot -e DISCORD_TOKEN -v tlm-bot-data:/data \
#             -p 127.0.0.1:8765:8765 tlm-bot
# (-p publishes the instructors' dashboard on the host's loopback; docs/operating.md.)
# /data holds config.toml (optional), the database and its salt, the trained classifier and
# the Hugging Face model cache (about 1 GB after the first start).
FROM python:3.11-slim

ENV PIP_NO_CACHE_DIR=1 \
    PYTHONUNBUFFERED=1 \
    HF_HOME=/data/hf-cache

WORKDIR /opt/tlm-bot
# constraints.txt: the versions the test suite passed with (the Makefile and CI install them too).
COPY constraints.txt ./
# The CPU build of torch from PyTorch's own index, first: PyPI would serve a CUDA build of
# several GB, and the project's `torch` requirement is then already satisfied.
RUN pip install "$(grep -m1 '^torch==' constraints.txt)" \
        --index-url https://download.pytorch.org/whl/cpu

COPY pyproject.toml README.md ./
COPY bot ./bot
COPY cogs ./cogs
COPY core ./core
RUN pip install . -c constraints.txt

RUN useradd --create-home --uid 10001 tlm && mkdir /data && chown tlm /data
# The dashboard on the container's interfaces, links to the published port: a new volume starts
# with this config.toml (docker copies the image's /data into it).
COPY --chown=tlm deploy/docker-config.toml /data/config.toml
EXPOSE 8765
USER tlm
# Relative paths in the config (database, classifier) resolve here; ./config.toml is read if
# present.
WORKDIR /data
VOLUME /data

# SIGTERM (docker stop) lets answers in flight finish and flushes the query log.
STOPSIGNAL SIGTERM
CMD ["tlm-bot", "run"]
