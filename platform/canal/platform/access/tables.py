"""casbin policy storage: one row per policy or grouping line."""

from piccolo.columns import Serial, Varchar
from piccolo.table import Table


class CasbinRule(Table, tablename="casbin_rule"):
    id = Serial(primary_key=True)
    ptype = Varchar(length=8, index=True)
    v0 = Varchar(length=100, default="", index=True)
    v1 = Varchar(length=100, default="", index=True)
    v2 = Varchar(length=100, default="")
    v3 = Varchar(length=100, default="")
    v4 = Varchar(length=100, default="")
    v5 = Varchar(length=100, default="")
