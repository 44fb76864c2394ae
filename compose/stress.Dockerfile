# Workload image for the job-pod stand-in: stress-ng from Debian's packages.
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends stress-ng \
    && rm -rf /var/lib/apt/lists/*
ENTRYPOINT ["stress-ng"]
