"""Mutant: the limit left to httpx's connection pool, no semaphore.

The requests in flight never exceed `limit` and the pool is a sliding window,
so every check passes but one: a URL queued behind a hanging one waits for a
connection under the pool timeout and fails with PoolTimeout, never sent.
"""

import asyncio

import httpx


async def fetch_all(urls, limit, timeout):
    limits = httpx.Limits(max_connections=limit)
    async with httpx.AsyncClient(timeout=timeout, limits=limits) as client:

        async def fetch_one(url):
            try:
                response = await client.get(url)
                response.raise_for_status()
                return response.text
            except httpx.HTTPError as err:
                return err

        return await asyncio.gather(*(fetch_one(url) for url in urls))
