"""The emulator's registered apps: return URLs, clients, companies, removal.

A mixin of :class:`~lwa_middleware.testing.LWAEmulator`, kept apart so the
facade stays small. It works on the emulator's :class:`._state._State`.
"""

from __future__ import annotations

from collections.abc import Iterable

from lwa_middleware.testing._grants import Customer, _Client, _new_client_secret
from lwa_middleware.testing._signin import _is_valid_redirect_uri
from lwa_middleware.testing._state import _State

__all__: list[str] = []


class _Apps:
    """The apps (LWA security profiles) of an emulator."""

    _state: _State
    client_id: str

    @property
    def redirect_uris(self) -> tuple[str, ...]:
        """The Allowed Return URLs of :attr:`client_id`, as registered now."""
        with self._state.lock:
            return tuple(self._state.clients[self.client_id].redirect_uris)

    def add_redirect_uri(self, uri: str, *, client_id: str | None = None) -> None:
        """Register one more Allowed Return URL, as in LWA's console.

        :meth:`reset` forgets it, and comes back to the ones given at
        construction.

        :param client_id: the app; :attr:`client_id` by default.
        :raises ValueError: not https nor http on loopback, or has a fragment.
        :raises KeyError: no app has this client id.

        Example::

            with serve_in_thread(build_demo_app(lwa)) as url:
                lwa.add_redirect_uri(url + "/callback")
        """
        (checked,) = _checked_redirect_uris([uri])
        with self._state.lock:
            client = self._state.clients[client_id or self.client_id]
            if checked not in client.redirect_uris:
                client.redirect_uris.append(checked)

    def add_client(
        self,
        client_id: str,
        *,
        client_secret: str | None = None,
        redirect_uris: Iterable[str] = (),
        company: str | None = None,
    ) -> str:
        """Register another app (security profile) for sign-in, until :meth:`reset`.

        :param company: the developer account the app belongs to. Apps of
            one company see the same ``user_id`` for a customer, apps of
            another a different one (:meth:`user_id_for`); by default the
            app joins the company of :attr:`client_id`.
        :returns: its client secret (``client_secret``, or a random one).
        :raises ValueError: the client id is empty or taken, or a URL is invalid.

        Example::

            other_secret = lwa.add_client("amzn1.application-oa2-client.other")
        """
        if not client_id:
            raise ValueError("client_id must not be empty")
        if client_secret == "":
            raise ValueError("client_secret must not be empty")
        uris = _checked_redirect_uris(redirect_uris)
        secret = client_secret or _new_client_secret()
        with self._state.lock:
            if client_id in self._state.clients:
                raise ValueError("client_id is already registered")
            self._state.clients[client_id] = _Client(client_id, secret, list(uris))
            if company is not None:
                self._state.companies[client_id] = company
            else:
                self._state.companies[client_id] = self._state.companies[self.client_id]
        return secret

    def remove_app(self, customer: Customer | str, *, client_id: str | None = None) -> int:
        """The customer removes the app from their Amazon account.

        Their refresh tokens for it are refused from now on (``invalid_grant``),
        their access tokens for it too (tokeninfo and profile answer
        ``invalid_token``), and codes not yet exchanged are void.  Signing in
        again gets new tokens.

        :param customer: a :class:`Customer` or a ``user_id`` (the customer's
            own, or the one the app sees).
        :param client_id: the app; :attr:`client_id` by default.
        :returns: how many access and refresh tokens stopped working.
        """
        user_id = customer.user_id if isinstance(customer, Customer) else customer
        return self._state.remove_app(user_id, client_id or self.client_id)

    def user_id_for(self, customer: Customer | str, *, client_id: str | None = None) -> str:
        """The ``user_id`` that tokeninfo and profile answer for ``customer``
        to the app ``client_id`` (:attr:`client_id` by default).

        The customer's own ``user_id`` for apps of the emulator's company;
        another, stable, one for apps registered with another ``company``
        (:meth:`add_client`).

        Example::

            lwa.add_client("amzn1.application-oa2-client.b", company="B Corp")
            ada = BUILTIN_CUSTOMERS[0]
            assert lwa.user_id_for(ada, client_id="amzn1.application-oa2-client.b") != ada.user_id
        """
        user_id = customer.user_id if isinstance(customer, Customer) else customer
        return self._state.user_id_for(user_id, client_id or self.client_id)


def _checked_redirect_uris(uris: Iterable[str]) -> tuple[str, ...]:
    if isinstance(uris, str):
        raise TypeError("redirect_uris must be a list of URLs, not one string")
    checked = tuple(uris)
    for uri in checked:
        if not isinstance(uri, str) or not _is_valid_redirect_uri(uri):
            raise ValueError(
                "a redirect URI must be an https URL, or http on a loopback host, "
                f"without a fragment: {uri!r}"
            )
    return checked
