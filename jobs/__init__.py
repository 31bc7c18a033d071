"""The producer side: the arq worker, the job kinds it runs and the progress API they report through."""
