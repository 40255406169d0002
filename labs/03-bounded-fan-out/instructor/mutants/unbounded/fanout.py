"""Mutant: every URL at once (the limit ignored), results in completion order."""

import asyncio

import httpx


async def fetch_all(urls, limit, timeout):
    async with httpx.AsyncClient(timeout=timeout) as client:

        async def fetch_one(url):
            try:
                response = await client.get(url)
                response.raise_for_status()
                return response.text
            except httpx.HTTPError as err:
                return err

        return [await done for done in asyncio.as_completed([fetch_one(url) for url in urls])]
