"""An ESCO's limit of running meter commands (max_running_commands) through
/escos: everyone who sees the ESCO sees it, administrators set it, operators
may not, and out-of-range values are refused."""


def test_admin_sets_the_running_commands_limit_operators_see_it(api):
    esco_id, code = api.new_esco()
    with api.client("operator", code) as operator:
        assert operator.get("/escos", params={"select": "code,max_running_commands"}).json() == [
            {"code": code, "max_running_commands": 50}]
        refused = operator.patch("/escos", params={"id": f"eq.{esco_id}"}, json={"max_running_commands": 500})
        assert refused.status_code == 403 and refused.json()["code"] == "42501", refused.text
    with api.client("admin") as admin:
        done = admin.patch("/escos", params={"code": f"eq.{code}"}, json={"max_running_commands": 120},
                           headers={"Prefer": "return=representation"})
        assert done.status_code == 200 and done.json()[0]["max_running_commands"] == 120, done.text
        bad = admin.patch("/escos", params={"code": f"eq.{code}"}, json={"max_running_commands": 0})
        assert bad.status_code == 400 and "escos_max_running_commands_range" in bad.json()["message"], bad.text
    with api.sql() as conn:
        assert conn.execute("SELECT max_running_commands FROM flows.escos WHERE id = %s", (esco_id,)).fetchone() == (
            120,)
