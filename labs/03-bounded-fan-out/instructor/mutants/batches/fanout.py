"""Mutant: batches of `limit` URLs, each batch waiting for its slowest URL."""

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

        results = []
        for i in range(0, len(urls), limit):
            results += await asyncio.gather(*(fetch_one(url) for url in urls[i : i + limit]))
        return results
