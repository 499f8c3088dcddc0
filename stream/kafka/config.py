"""How tympan connects to Kafka: one frozen config, rendered for aiokafka and for Faust.

Every producer, consumer, admin client and Faust app in tympan is built from a
:class:`KafkaClientConfig`, so TLS and SASL are configured once and cannot drift
between the worker, the CLI and the tests. The config is validated when it is built:
a SASL protocol without a username is a :class:`~stream.errors.ConfigError` at start,
not an authentication failure minutes later.

This module never reads ``os.environ``; :func:`KafkaClientConfig.from_environ` takes
the mapping its caller (a CLI module, ``stream.settings``) chose to pass.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast, get_args

from stream.errors import BrokerError, ConfigError

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]

SECURITY_PROTOCOLS: tuple[str, ...] = get_args(SecurityProtocol)
SASL_MECHANISMS: tuple[str, ...] = get_args(SaslMechanism)
DEFAULT_BOOTSTRAP = "127.0.0.1:9092"

_SASL = frozenset({"SASL_PLAINTEXT", "SASL_SSL"})
_TLS = frozenset({"SSL", "SASL_SSL"})

# Environment variables read by :meth:`KafkaClientConfig.from_environ` (see docs/kafka.md).
ENV_BROKER = "TYMPAN_BROKER"
ENV_SECURITY_PROTOCOL = "TYMPAN_KAFKA_SECURITY_PROTOCOL"
ENV_SASL_MECHANISM = "TYMPAN_KAFKA_SASL_MECHANISM"
ENV_SASL_USERNAME = "TYMPAN_KAFKA_SASL_USERNAME"
ENV_SASL_PASSWORD = "TYMPAN_KAFKA_SASL_PASSWORD"
ENV_SSL_CAFILE = "TYMPAN_KAFKA_SSL_CAFILE"
ENV_SSL_CERTFILE = "TYMPAN_KAFKA_SSL_CERTFILE"
ENV_SSL_KEYFILE = "TYMPAN_KAFKA_SSL_KEYFILE"
ENV_CLIENT_ID = "TYMPAN_KAFKA_CLIENT_ID"


@dataclass(frozen=True)
class KafkaClientConfig:
    """Where the brokers are and how to authenticate to them.

    Parameters
    ----------
    bootstrap_servers:
        Comma-separated ``host:port`` list, e.g. ``"10.0.0.5:9092,10.0.0.6:9092"``.
    security_protocol:
        ``PLAINTEXT``, ``SSL``, ``SASL_PLAINTEXT`` or ``SASL_SSL`` (Kafka's names).
    sasl_mechanism:
        ``PLAIN``, ``SCRAM-SHA-256`` or ``SCRAM-SHA-512``; used by the SASL protocols only.
    sasl_username, sasl_password:
        Required by the SASL protocols, refused by the others.
    ssl_cafile, ssl_certfile, ssl_keyfile:
        PEM files for TLS (``SSL``/``SASL_SSL``): the CA that signed the brokers'
        certificates (system CAs when ``None``), and a client certificate and key for
        mutual TLS.
    client_id:
        Names this client in broker logs and quotas.
    """

    bootstrap_servers: str = DEFAULT_BOOTSTRAP
    security_protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism = "PLAIN"
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    client_id: str = "tympan"

    def __post_init__(self) -> None:
        _check_bootstrap(self.bootstrap_servers)
        if self.security_protocol not in SECURITY_PROTOCOLS:
            raise ConfigError(
                f"security_protocol {self.security_protocol!r} is not one of "
                f"{', '.join(SECURITY_PROTOCOLS)}"
            )
        if self.sasl_mechanism not in SASL_MECHANISMS:
            raise ConfigError(
                f"sasl_mechanism {self.sasl_mechanism!r} is not one of {', '.join(SASL_MECHANISMS)}"
            )
        self._check_sasl()
        self._check_tls()
        if not self.client_id:
            raise ConfigError("client_id is empty; it names this client in broker logs")

    def _check_sasl(self) -> None:
        if self.security_protocol in _SASL:
            if not self.sasl_username:
                raise ConfigError(
                    f"security_protocol {self.security_protocol} needs sasl_username "
                    f"(mechanism {self.sasl_mechanism}); none was given"
                )
            if self.sasl_password is None:
                raise ConfigError(
                    f"security_protocol {self.security_protocol} needs sasl_password "
                    f"for user {self.sasl_username!r}; none was given"
                )
        elif self.sasl_username is not None or self.sasl_password is not None:
            raise ConfigError(
                f"sasl_username/sasl_password were given but security_protocol is "
                f"{self.security_protocol}; use SASL_PLAINTEXT or SASL_SSL to send them"
            )

    def _check_tls(self) -> None:
        files = {
            "ssl_cafile": self.ssl_cafile,
            "ssl_certfile": self.ssl_certfile,
            "ssl_keyfile": self.ssl_keyfile,
        }
        given = [name for name, value in files.items() if value is not None]
        if given and self.security_protocol not in _TLS:
            raise ConfigError(
                f"{', '.join(given)} given but security_protocol is {self.security_protocol}; "
                f"use SSL or SASL_SSL for TLS"
            )
        if self.ssl_keyfile is not None and self.ssl_certfile is None:
            raise ConfigError(
                f"ssl_keyfile {self.ssl_keyfile!r} given without ssl_certfile; "
                f"mutual TLS needs the certificate the key belongs to"
            )

    @classmethod
    def from_environ(
        cls,
        environ: Mapping[str, str],
        *,
        bootstrap_servers: str | None = None,
        default_client_id: str = "tympan",
    ) -> KafkaClientConfig:
        """Build a config from ``TYMPAN_BROKER`` / ``TYMPAN_KAFKA_*`` in ``environ``.

        ``bootstrap_servers`` (a ``--broker`` flag) wins over ``TYMPAN_BROKER``;
        ``default_client_id`` applies when ``TYMPAN_KAFKA_CLIENT_ID`` is unset. Empty
        variables count as unset.
        """

        def get(name: str) -> str | None:
            return environ.get(name) or None

        protocol = get(ENV_SECURITY_PROTOCOL) or "PLAINTEXT"
        mechanism = get(ENV_SASL_MECHANISM) or "PLAIN"
        return cls(
            bootstrap_servers=bootstrap_servers or get(ENV_BROKER) or DEFAULT_BOOTSTRAP,
            security_protocol=cast(SecurityProtocol, protocol.upper()),
            sasl_mechanism=cast(SaslMechanism, mechanism.upper()),
            sasl_username=get(ENV_SASL_USERNAME),
            sasl_password=get(ENV_SASL_PASSWORD),
            ssl_cafile=get(ENV_SSL_CAFILE),
            ssl_certfile=get(ENV_SSL_CERTFILE),
            ssl_keyfile=get(ENV_SSL_KEYFILE),
            client_id=get(ENV_CLIENT_ID) or default_client_id,
        )

    @property
    def bootstrap_list(self) -> list[str]:
        """``bootstrap_servers`` split into ``host:port`` strings."""
        return _split_bootstrap(self.bootstrap_servers)

    @property
    def uses_tls(self) -> bool:
        return self.security_protocol in _TLS

    @property
    def uses_sasl(self) -> bool:
        return self.security_protocol in _SASL

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context for ``SSL``/``SASL_SSL``, ``None`` for the plaintext protocols.

        Raises
        ------
        ConfigError
            When a PEM file is missing or unreadable; the message names the path.
        """
        if not self.uses_tls:
            return None
        for name, path in (
            ("ssl_cafile", self.ssl_cafile),
            ("ssl_certfile", self.ssl_certfile),
            ("ssl_keyfile", self.ssl_keyfile),
        ):
            if path is not None and not Path(path).is_file():
                raise ConfigError(f"{name} {path!r} does not exist or is not a file")
        try:
            context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.ssl_cafile)
            if self.ssl_certfile is not None:
                context.load_cert_chain(self.ssl_certfile, keyfile=self.ssl_keyfile)
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(
                f"cannot build a TLS context from ssl_cafile={self.ssl_cafile!r}, "
                f"ssl_certfile={self.ssl_certfile!r}, ssl_keyfile={self.ssl_keyfile!r}: {exc}"
            ) from exc
        return context

    def aiokafka_kwargs(self) -> dict[str, Any]:
        """Keyword arguments shared by ``AIOKafkaProducer``, ``AIOKafkaConsumer`` and
        ``AIOKafkaAdminClient``.

        aiokafka names the SASL user ``sasl_plain_username`` for every mechanism
        (SCRAM included).
        """
        kwargs: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_list,
            "client_id": self.client_id,
            "security_protocol": self.security_protocol,
        }
        if self.uses_tls:
            kwargs["ssl_context"] = self.ssl_context()
        if self.uses_sasl:
            kwargs["sasl_mechanism"] = self.sasl_mechanism
            kwargs["sasl_plain_username"] = self.sasl_username
            kwargs["sasl_plain_password"] = self.sasl_password
        return kwargs

    def faust_broker_url(self) -> str:
        """Faust's ``broker`` setting: ``kafka://host:port`` per server, ``;``-separated."""
        return ";".join(f"kafka://{server}" for server in self.bootstrap_list)

    def faust_settings(self) -> dict[str, Any]:
        """Keyword arguments for ``faust.App``: ``broker``, ``broker_client_id`` and,
        for TLS/SASL, ``broker_credentials``.

        Faust is imported here, not at module import, so that tools which only need
        aiokafka (``tympan topics``, the broker wait in ``scripts/kafka.sh``) start fast.
        """
        settings: dict[str, Any] = {
            "broker": self.faust_broker_url(),
            "broker_client_id": self.client_id,
        }
        credentials = self._faust_credentials()
        if credentials is not None:
            settings["broker_credentials"] = credentials
        return settings

    def _faust_credentials(self) -> Any:
        import faust

        context = self.ssl_context()
        if self.uses_sasl:
            return faust.SASLCredentials(
                username=self.sasl_username,
                password=self.sasl_password,
                ssl_context=context,
                mechanism=self.sasl_mechanism,
            )
        if context is not None:
            return faust.SSLCredentials(context)
        return None


async def send_acked(
    client: KafkaClientConfig,
    topic: str,
    records: Iterable[tuple[bytes, bytes | None]],
    *,
    what: str,
    max_request_size: int | None = None,
    headers: Callable[[bytes, bytes | None], list[tuple[str, bytes]]] | None = None,
) -> None:
    """Send ``(key, value)`` records one at a time, each acknowledged by every in-sync
    replica before the next: for the few records (control announcements, registry
    enrollments) whose loss or reordering would leave workers disagreeing.
    ``headers(key, value)`` gives each record's headers (its signature, ``stream.control.signing``).

    Raises
    ------
    BrokerError
        The broker cannot be reached or refuses a record; the message names ``what``
        was being published, the topic and the brokers.
    """
    from aiokafka import AIOKafkaProducer
    from aiokafka.errors import KafkaError

    extra = {} if max_request_size is None else {"max_request_size": max_request_size}
    producer = AIOKafkaProducer(
        **client.aiokafka_kwargs(), acks="all", enable_idempotence=True, **extra
    )
    try:
        await producer.start()
        for key, value in records:
            extra_headers = headers(key, value) if headers is not None else None
            await producer.send_and_wait(topic, value=value, key=key, headers=extra_headers)
    except KafkaError as exc:
        raise BrokerError(
            f"cannot publish {what} to {topic!r}: {broker_failure(exc, client.bootstrap_servers)}"
        ) from exc
    finally:
        await producer.stop()


def _split_bootstrap(bootstrap_servers: str) -> list[str]:
    return [part.strip() for part in bootstrap_servers.split(",") if part.strip()]


def _check_bootstrap(bootstrap_servers: str) -> None:
    servers = _split_bootstrap(bootstrap_servers)
    if not servers:
        raise ConfigError(f"bootstrap_servers {bootstrap_servers!r} names no broker")
    for server in servers:
        if "://" in server:
            raise ConfigError(
                f"bootstrap server {server!r} has a URL scheme; give host:port "
                f"(kafka:// is added for Faust by faust_broker_url())"
            )
        host, sep, port = server.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(
                f"bootstrap server {server!r} in {bootstrap_servers!r} is not host:port "
                f"with a port in 1..65535"
            )


UNREACHABLE_FIX = (
    "is Kafka running there? Start one with `make kafka-up` (a checkout's single-node "
    "broker), or point --broker / $TYMPAN_BROKER at yours"
)
"""What to do when no broker answers at the address tympan was given."""


def broker_failure(exc: BaseException, bootstrap_servers: str) -> str:
    """A Kafka client's failure in words a user can act on.

    A refused connection reaches us from aiokafka as
    ``KafkaConnectionError("Unable to bootstrap from [('127.0.0.1', 9999,
    <AddressFamily.AF_INET: 2>)]")``, which neither says that no broker runs there nor
    what to do; other failures keep the client's own words.

    Parameters
    ----------
    exc : BaseException
        What the Kafka client raised.
    bootstrap_servers : str
        The servers the client was given, named in the sentence.

    Returns
    -------
    str
        For a broker that refused us (wrong credentials, TLS, see :class:`BrokerRefusals`):
        that cause; for one that cannot be reached: ``no Kafka broker answered at
        HOST:PORT: is Kafka running there? ...``; otherwise the exception's type and
        message.
    """
    text = str(exc)
    if isinstance(exc, ConnectionError | TimeoutError) or any(
        needle in text for needle in ("Unable to bootstrap", "Connect call failed")
    ):
        refused = _REFUSALS.tell() if _REFUSALS is not None else None
        if refused is not None:  # it answered, then closed or refused: not "is it running?"
            return f"the Kafka broker at {bootstrap_servers} refused the connection: {refused}"
        return f"no Kafka broker answered at {bootstrap_servers}: {UNREACHABLE_FIX}"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class BrokerRefusals(logging.Filter):
    """Why the broker refused us, in words a user can act on.

    aiokafka logs the cause of a failed connection (a wrong password, an untrusted
    certificate, a plaintext client on a TLS listener) and then raises a bare
    "Unable to bootstrap", which is all a command's own error message can quote. This
    filter keeps the first cause it sees, so :func:`main` can print one clear line
    after a failed command. It never drops a record.
    """

    CAUSES: tuple[tuple[str, str], ...] = (
        (
            "SaslAuthenticationFailed",
            "the broker refused our credentials (authentication failed): check "
            "TYMPAN_KAFKA_SASL_USERNAME, TYMPAN_KAFKA_SASL_PASSWORD and "
            "TYMPAN_KAFKA_SASL_MECHANISM",
        ),
        (
            "CERTIFICATE_VERIFY_FAILED",
            "the broker's TLS certificate is not trusted: TYMPAN_KAFKA_SSL_CAFILE must "
            "name the CA that signed it",
        ),
        (
            "UnsupportedSaslMechanism",
            "the broker does not offer this SASL mechanism: check TYMPAN_KAFKA_SASL_MECHANISM",
        ),
        (
            "closed",
            "the broker closed the connection: it may require TLS and/or SASL "
            "(TYMPAN_KAFKA_SECURITY_PROTOCOL, docs/security.md)",
        ),
    )

    def __init__(self) -> None:
        super().__init__()
        self.hint: str | None = None
        self.told = False

    def tell(self) -> str | None:
        """The cause, for an error message that will carry it; :func:`main` then does not
        print it a second time."""
        self.told = self.hint is not None
        return self.hint

    def filter(self, record: logging.LogRecord) -> bool:
        if self.hint is None and record.levelno >= logging.ERROR:
            message = record.getMessage()
            for needle, hint in self.CAUSES:
                if needle in message:
                    self.hint = hint
                    break
        return True


_REFUSALS: BrokerRefusals | None = None


def broker_refusals() -> BrokerRefusals:
    """The process's :class:`BrokerRefusals`, installed on aiokafka's logger on first use."""
    global _REFUSALS
    if _REFUSALS is None:
        _REFUSALS = BrokerRefusals()
        logging.getLogger("aiokafka").addFilter(_REFUSALS)
    return _REFUSALS
