"""lfmcdm.parallel.pmap: ordered results, and workers that keep native threads to their share of the cores."""

from lfmcdm.parallel import n_workers, pmap


def _native_threads(item: int) -> tuple[int, int, int]:
    """(item, BLAS threads, OpenCV threads) as a worker sees them."""
    import cv2
    from threadpoolctl import threadpool_info

    blas = max(info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas")
    return item, blas, cv2.getNumThreads()


def test_workers_use_their_share_of_the_cores():
    """Two workers on a machine of n cores: each gets n // 2 BLAS and OpenCV threads, not n (on 2 cores,
    two workers with 2 spinning BLAS threads each made the phase estimate 40x slower)."""
    results = list(pmap(_native_threads, list(range(6)), workers=2, desc="threads", progress=False))
    share = max(1, n_workers(0) // 2)
    assert [r[0] for r in results] == list(range(6))
    assert {r[1] for r in results} == {share} and {r[2] for r in results} == {share}
