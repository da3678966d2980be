"""RunPod serverless worker: the job envelope, answers within a size budget, the handler and the launcher.

Importing this package (or any module in it) touches no disk, network or torch; the RunPod SDK is imported and
started only by ``launcher.main()``.
"""
