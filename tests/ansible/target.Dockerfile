# A fresh ivagate host for the Ansible test: the project's Debian base plus what every server
# has and a container lacks: systemd as init, Python for Ansible's modules, iproute2 (whose
# `ip` gives Ansible the host's addresses).
ARG BASE_IMAGE=ivagate/debian:bookworm-slim
FROM ${BASE_IMAGE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends systemd systemd-sysv python3 iproute2 \
 && rm -rf /var/lib/apt/lists/*
STOPSIGNAL SIGRTMIN+3
CMD ["/sbin/init"]
