"""Shopee access tokens per shop. The refresh token is single use: refreshing burns it, so the new pair
is stored in the same transaction that holds the shop's row lock. Two workers that need a new token at
once queue on the lock; the second finds the first one's fresh token and does not refresh again (with the
burnt refresh token it would lose the shop's authorization)."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from integrations.clients import client_options
from integrations.shopee.client import ShopeeClient

from ..models import Shop

log = logging.getLogger(__name__)


def _partner_client(shop: Shop, **kw) -> ShopeeClient:
    client = ShopeeClient(shop.base_url, partner_id=shop.partner_id, partner_key=shop.partner_key,
                          **{**client_options(), **kw})
    client.status_key = f"shopee:{shop.shop_id}"  # the overview's row of this shop (integrations.status)
    return client


def _is_fresh(shop: Shop, rejected: str | None) -> bool:
    margin = timedelta(seconds=settings.ADS_TOKEN_REFRESH_MARGIN_SECONDS)
    return bool(shop.access_token and shop.access_token != rejected and shop.token_expires_at
                and shop.token_expires_at > timezone.now() + margin)


def access_token(shop_pk: int, *, rejected: str | None = None, **client_kw) -> str:
    """A valid access token for the shop, refreshed (once, under the row lock) when it is missing, about
    to expire, or is the one Shopee just refused (``rejected``)."""
    shop = Shop.objects.get(pk=shop_pk)
    if _is_fresh(shop, rejected):
        return shop.access_token
    with transaction.atomic():
        shop = Shop.objects.select_for_update().get(pk=shop_pk)
        if _is_fresh(shop, rejected):  # another worker refreshed while we waited for the lock
            return shop.access_token
        if not shop.refresh_token:
            from integrations.shopee.client import RefreshRejected

            raise RefreshRejected(f"shop {shop.shop_id} has no refresh token: authorize the app again",
                                  system="shopee")
        client = _partner_client(shop, **client_kw)
        try:
            tokens = client.refresh_access_token(shop.refresh_token, shop.shop_id)
        finally:
            client.close()
        now = timezone.now()
        Shop.objects.filter(pk=shop_pk).update(
            access_token=tokens["access_token"], refresh_token=tokens["refresh_token"],
            token_expires_at=now + timedelta(seconds=tokens["expire_in"]), token_refreshed_at=now)
        log.info("shop %s: access token refreshed", shop.shop_id)
        return tokens["access_token"]


def shop_client(shop: Shop, **kw) -> ShopeeClient:
    """A client for one shop that renews its token through ``access_token``."""
    def source(rejected: str | None = None) -> str:
        return access_token(shop.pk, rejected=rejected)

    client = ShopeeClient(shop.base_url, partner_id=shop.partner_id, partner_key=shop.partner_key,
                          shop_id=shop.shop_id, token_source=source, **{**client_options(), **kw})
    client.status_key = f"shopee:{shop.shop_id}"  # the overview's row of this shop (integrations.status)
    return client


def authorize_with_code(shop: Shop, code: str) -> None:
    """Exchange a seller's one-time authorization code for the first token pair."""
    client = _partner_client(shop)
    try:
        tokens = client.get_access_token(code, shop.shop_id)
    finally:
        client.close()
    now = timezone.now()
    Shop.objects.filter(pk=shop.pk).update(
        access_token=tokens["access_token"], refresh_token=tokens["refresh_token"],
        token_expires_at=now + timedelta(seconds=tokens["expire_in"]), token_refreshed_at=now)
