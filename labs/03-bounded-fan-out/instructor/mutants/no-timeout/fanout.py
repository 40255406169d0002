"""Mutant: right in every way but one - `timeout` is never passed to httpx.

httpx's own default (5 s) applies instead, so the URL that hangs ends only when
the grader's server gives up on it (a 504 after 2.5 s).
"""

import asyncio

import httpx


async def fetch_all(urls, limit, timeout):
    slots = asyncio.Semaphore(limit)
    async with httpx.AsyncClient() as client:

        async def fetch_one(url):
            async with slots:
                try:
                    response = await client.get(url)
                    response.raise_for_status()
                    return response.text
                except httpx.HTTPError as err:
                    return err

        return await asyncio.gather(*(fetch_one(url) for url in urls))
