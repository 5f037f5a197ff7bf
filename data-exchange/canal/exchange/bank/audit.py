"""The data bank's audit action codes, named for people (English; Chinese in databank.po).

Kept apart from ``services`` so the audit trail's label lookup imports nothing else of ours.
"""

AUDIT_LABELS: dict[str, str] = {
    "bank.deleted": "Data bank item moved to the recycle bin",
    "bank.restored": "Data bank item restored from the recycle bin",
    "bank.purged": "Data bank items deleted for good",
    "bank.version_restored": "Data bank file version restored",
    "bank.share_created": "Data bank share link created",
    "bank.share_revoked": "Data bank share link revoked",
    "bank.share_downloaded": "Data bank file downloaded through a share link",
    "bank.downloaded": "Data bank file downloaded",
    "bank.folder_downloaded": "Data bank folder downloaded as a ZIP",
    "bank.archived": "Data bank file archived to cold storage",
    "bank.retrieval_requested": "Data bank file retrieval from the archive requested",
    "bank.backup_scheduled": "Data bank folder backup schedule changed",
    "bank.backup_made": "Data bank folder backed up",
    "bank.backup_restored": "Data bank folder restored from a backup",
}
