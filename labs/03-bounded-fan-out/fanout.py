"""Lab 03 - bounded fan-out. This is the file you hand in.

fetch_all fetches many URLs concurrently, but never more than `limit` at a
time: the polite way to call another service (or a hundred). Read README.md
first. From the root of the Concurrency Lab repository,
`make try LAB=03 SUBMISSION=path/to/this/folder` calls THIS fetch_all against
the grader's server and shows what it did; `make grade LAB=03
SUBMISSION=path/to/this/folder` checks it.
"""

### BEGIN SOLUTION
import asyncio

### END SOLUTION
import httpx


async def fetch_all(urls, limit, timeout):
    """GET every URL and return one result per URL, in the order of `urls`.

    A result is the response body (a str) for a 2xx answer, or the exception
    that URL ended with:
      - httpx.TimeoutException if it took longer than `timeout` seconds,
      - httpx.HTTPStatusError for a 4xx or 5xx answer,
      - another httpx.HTTPError if the server could not be reached.
    One bad URL never stops the others, and fetch_all itself does not raise.

    At most `limit` requests are in flight at any moment, and a slow URL holds
    up only its own slot: the next URL starts as soon as any request finishes.
    """
    ### BEGIN SOLUTION
    # The semaphore is the limit: a request waits *here*, outside httpx, for a
    # free slot. (Limiting with httpx's connection pool alone would also cap
    # the connections, but a URL queued in the pool waits under the pool
    # timeout: behind a hanging URL it fails with PoolTimeout, never sent.)
    slots = asyncio.Semaphore(limit)

    async with httpx.AsyncClient(timeout=timeout) as client:

        async def fetch_one(url):
            async with slots:
                try:
                    response = await client.get(url)
                    response.raise_for_status()  # 4xx/5xx -> HTTPStatusError
                    return response.text
                except httpx.HTTPError as err:
                    return err  # returned in this URL's slot, not raised

        # Start every URL now; the semaphore admits `limit` at a time. gather
        # returns results in the order of its arguments, not of completion.
        return await asyncio.gather(*(fetch_one(url) for url in urls))
    ### END SOLUTION
    ### BEGIN STARTER
    # # This works - one URL at a time, and the first bad URL stops everything.
    # async with httpx.AsyncClient() as client:
    #     results = []
    #     for url in urls:
    #         response = await client.get(url)
    #         response.raise_for_status()
    #         results.append(response.text)
    #     return results
    ### END STARTER
