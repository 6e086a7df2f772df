"""Controller configuration: one settings class, env prefix ``IVAGATE_``.

Values come, highest priority first, from: keyword arguments, environment variables
(``IVAGATE_ESL__PASSWORD``: nested fields joined by ``__``), the TOML file named by
``IVAGATE_CONFIG_FILE`` (``--config`` on the command line), then the defaults below.
Every fact the controller needs (a port, a header name, a timeout) is a field here.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

__all__ = [
    "ApiSettings",
    "CallSettings",
    "EdgeSettings",
    "EslSettings",
    "LogSettings",
    "MediaSettings",
    "RoutingSettings",
    "Settings",
]

CONFIG_FILE_ENV = "IVAGATE_CONFIG_FILE"


class EslSettings(BaseModel):
    """The inbound Event Socket connection to the FreeSWITCH beside this controller."""

    host: str = Field("127.0.0.1", description="FreeSWITCH event socket address (loopback)")
    port: int = Field(8021, ge=1, le=65535, description="FreeSWITCH event socket port")
    password: SecretStr = Field(
        description="event_socket.conf.xml password; FreeSWITCH's default is refused"
    )
    reply_timeout: float = Field(5.0, gt=0, description="seconds to wait for an api/bgapi reply")
    reconnect_min: float = Field(0.5, gt=0, description="first reconnect delay, seconds")
    reconnect_max: float = Field(30.0, gt=0, description="reconnect backoff ceiling, seconds")
    ready_refresh: float = Field(
        1.0, gt=0, description="seconds between renewals of the node's ready lease"
    )
    ready_lease: float = Field(
        2.5,
        gt=0,
        description="seconds the node takes calls after the last renewal: a controller that "
        "died (kill -9) leaves a node whose new calls get 503 at once within this",
    )

    @model_validator(mode="after")
    def _lease_outlives_refresh(self) -> EslSettings:
        if self.ready_lease <= self.ready_refresh:
            raise ValueError("ready_lease must be longer than ready_refresh")
        return self


class RoutingSettings(BaseModel):
    """How a call picks its bot: header, then DID, then the default bot, if any."""

    bot_header: str | None = Field(
        None,
        description="SIP header naming the bot (RingCentral: 'header name TBD'); off when unset",
    )
    dids: dict[str, str] = Field(
        default_factory=dict,
        description="Request-URI user (DID) -> bot name: a bot takes only the DIDs listed "
        "(the tenant boundary: all RingCentral customers call from the same supernets)",
    )
    default_bot: str | None = Field(
        None,
        description="bot for calls no header or DID routed; unset: such calls get 404 "
        "(a default bot takes every tenant's unrouted calls)",
    )

    def routed_bots(self) -> set[str]:
        """The bots the DIDs and the default name (the header may name any bot)."""
        named = {*self.dids.values(), self.default_bot}
        return {bot for bot in named if bot is not None}


class CallSettings(BaseModel):
    """Per-call limits."""

    info_max_bytes: int = Field(
        16384, ge=64, description="largest JSON body sent as one SIP INFO, in bytes"
    )
    udp_info_max_bytes: int = Field(
        800,
        ge=64,
        description="the same on calls RingCX places over UDP: RFC 3261 18.1.1 wants a "
        "request near or over 1300 bytes off UDP; above it a payload is refused",
    )
    final_bye_timeout: float = Field(
        10.0, gt=0, description="after the final intent, seconds to wait for RingCX's BYE"
    )
    answer_deadline: float = Field(
        4.0,
        gt=0,
        description="seconds a bot has to answer once the call is parked; then the call "
        "fails once with 480. Keep it below the edge's MEDIA_ANSWER_TIMEOUT (5000 ms) by "
        "0.5 s or more: the edge CANCELs a call unanswered by then and runs it again on "
        "another node (a second copy of the bot)",
    )
    bot_options: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="bot name -> options passed to that bot (the webhook bot's: below)",
    )
    bots: dict[str, str] = Field(
        default_factory=dict,
        description="extra bots: name -> 'module:Class' (entry points 'ivagate.bots' also load)",
    )
    tts_engine: str = Field(
        "flite|kal", description="'engine|voice' for say(): FreeSWITCH's speak application"
    )
    keep_ended: int = Field(
        1000, ge=0, description="ended calls kept for GET /calls (newest first)"
    )
    drain_timeout: float = Field(
        60.0, gt=0, description="on shutdown, seconds active calls get to finish"
    )


class EdgeSettings(BaseModel):
    """The edges' reports of RingCX's answer to each INFO (kamailio/README.md, "INFO reports")."""

    listen: str | None = Field(
        None,
        description="'host:port' the edges send INFO reports to: this media node's address "
        "and the edges' REPORT_PORT (8449); unset: INFOs are not followed (sip_status null, "
        "Success on FreeSWITCH's +OK)",
    )
    edges: list[str] = Field(
        default_factory=list, description="addresses of the edges allowed to send reports"
    )
    token: SecretStr | None = Field(
        None, description="the edges' REPORT_TOKEN, which starts every report line"
    )
    report_timeout: float = Field(
        10.0,
        gt=0,
        description="seconds to wait for an INFO's report before the next INFO; longer "
        "than the edge's ACK_WAIT plus INFO_REPLY_TIMEOUT (4 s each)",
    )

    @model_validator(mode="after")
    def _complete(self) -> EdgeSettings:
        if self.listen is not None:
            if self.token is None or not self.token.get_secret_value():
                raise ValueError("edge.token is required with edge.listen")
            if not self.edges:
                raise ValueError("edge.edges is required with edge.listen")
        return self


class MediaSettings(BaseModel):
    """Live call audio (``Call.open_stream``): FreeSWITCH bridges the call to a second SIP
    leg on loopback, answered by this controller, which carries L16 audio in plain RTP."""

    host: str = Field(
        "127.0.0.1",
        description="address of the controller's SIP and RTP sockets for audio streams; "
        "FreeSWITCH's profile ivagate-media must reach it (loopback beside it)",
    )
    port: int = Field(
        0,
        ge=0,
        le=65535,
        description="the controller's SIP port for stream legs; 0: a free one (FreeSWITCH "
        "learns it from each dial string)",
    )
    profile: str = Field(
        "ivagate-media", description="FreeSWITCH SIP profile that places the stream legs"
    )
    open_timeout: float = Field(
        3.0, gt=0, description="seconds FreeSWITCH has to place a stream's leg"
    )
    inbound_frames: int = Field(
        25,
        ge=1,
        description="caller frames (20 ms each) a stream holds for a bot that reads late; "
        "beyond it the oldest are dropped and counted",
    )
    max_buffered_seconds: float = Field(
        120.0, gt=0, description="bot audio a stream holds unplayed; more is refused"
    )


class ApiSettings(BaseModel):
    """The HTTP control API."""

    host: str = Field("127.0.0.1", description="HTTP API listen address")
    port: int = Field(8088, ge=1, le=65535, description="HTTP API listen port")
    token: SecretStr | None = Field(
        None, description="bearer token; /healthz, /readyz and /metrics need none"
    )


class LogSettings(BaseModel):
    level: str = Field(
        "INFO", pattern="^(DEBUG|INFO|WARNING|ERROR)$", description="DEBUG, INFO, WARNING or ERROR"
    )
    json_format: bool = Field(True, description="one JSON object per line")
    flush_interval: float = Field(
        0.2,
        ge=0,
        description="seconds a log line may wait to be written with others "
        "(WARNING and above at once; 0: every line at once)",
    )


class Settings(BaseSettings):
    """Everything the controller reads at start-up."""

    model_config = SettingsConfigDict(
        env_prefix="IVAGATE_",
        env_nested_delimiter="__",
        extra="forbid",
    )

    esl: EslSettings
    routing: RoutingSettings = Field(default_factory=RoutingSettings)
    call: CallSettings = Field(default_factory=CallSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    edge: EdgeSettings = Field(default_factory=EdgeSettings)
    media: MediaSettings = Field(default_factory=MediaSettings)
    log: LogSettings = Field(default_factory=LogSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        config_file = os.environ.get(CONFIG_FILE_ENV)
        sources: tuple[PydanticBaseSettingsSource, ...] = (init_settings, env_settings)
        if config_file:
            sources += (TomlConfigSettingsSource(settings_cls, toml_file=Path(config_file)),)
        return sources
