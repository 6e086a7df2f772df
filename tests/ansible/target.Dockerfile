# A fresh ivagate host for the Ansible tests: a Debian image (the project's base, or the media
# node image of an operator's pre-installed FreeSWITCH, scripts/freeswitch-image) plus what every
# server has and a container lacks: systemd as init, Python for Ansible's modules, iproute2
# (whose `ip` gives Ansible the host's addresses).
ARG BASE_IMAGE=ivagate/debian:bookworm-slim
FROM ${BASE_IMAGE}
USER root
RUN apt-get update \
 && apt-get install -y --no-install-recommends systemd systemd-sysv python3 iproute2 \
 && rm -rf /var/lib/apt/lists/*
STOPSIGNAL SIGRTMIN+3
ENTRYPOINT []
CMD ["/sbin/init"]
