"""The development OpenID Connect provider, with the demo users of the site configuration.

It wraps `oidc-provider-mock`: the hub's client is registered with the deployment's generated
secret and its one callback URL (unknown clients and other redirect URIs are refused), and the
interactive debugger that the mock switches on is switched off again.

For demonstrations and tests only: anyone who reaches its login form may sign in as any user.
Run as `python -m enclave_hub.local.devidp --config FILE`.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

import flask
import oidc_provider_mock
import werkzeug.serving
from oidc_provider_mock import User, init_app
from oidc_provider_mock._storage import Client

from ..core.site_config import SiteConfig, load_site_config
from ..core.site_secrets import load_secrets

log = logging.getLogger("enclave.devidp")


def demo_user_claims(config: SiteConfig) -> list[User]:
    """The demo users as OIDC subjects with profile, email and group claims."""
    groups_claim = config.identity.groups_claim
    return [
        User(
            sub=user.username,
            claims={
                "preferred_username": user.username,
                "name": user.name,
                "email": user.email,
                "email_verified": True,
                groups_claim: list(user.groups),
            },
        )
        for user in config.identity.dev_provider.users
    ]


def hub_client(config: SiteConfig, client_secret: str) -> Client:
    """The hub as the provider's only client."""
    return Client(
        id=config.identity.client_id,
        secret=client_secret,
        redirect_uris=[f"{config.public_url}/hub/oauth_callback"],
        allowed_scopes=Client.SCOPES_SUPPORTED,
        token_endpoint_auth_method="client_secret_basic",
    )


def build_app(config: SiteConfig, client_secret: str) -> flask.Flask:
    """A Flask app serving the provider for this deployment."""
    # Named after the mock's package so that its templates are found.
    app = flask.Flask(oidc_provider_mock.__name__)
    plain_wsgi_app = app.wsgi_app
    init_app(
        app,
        require_client_registration=True,
        user_claims=demo_user_claims(config),
    )
    # init_app turns on Werkzeug's interactive debugger; a provider must never expose it.
    app.wsgi_app = plain_wsgi_app
    app.debug = False
    app.secret_key = os.urandom(32)
    client = hub_client(config, client_secret)

    @app.before_request
    def register_hub_client() -> None:
        # Runs after the mock has bound its per-app storage to flask.g.
        storage = flask.g.oidc_provider_mock_storage
        if storage.get_client(client.id) is None:
            storage.store_client(client)

    return app


def serve(config: SiteConfig) -> None:
    client_secret = load_secrets(config.state_dir).oauth_client_secret
    # The provider speaks plain HTTP on loopback; authlib refuses that unless told.
    os.environ["AUTHLIB_INSECURE_TRANSPORT"] = "1"
    app = build_app(config, client_secret)
    port = config.identity.dev_provider.port
    server = werkzeug.serving.make_server("127.0.0.1", port, app, threaded=True)
    log.info("development OIDC provider listening on http://127.0.0.1:%d", port)
    server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True, help="site configuration file")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s"
    )
    serve(load_site_config(args.config))


if __name__ == "__main__":
    main()
