"""Rules in the database: versions with who/when/why, restore, seed from YAML, export and import back."""

from __future__ import annotations

from pathlib import Path

import pytest

from dicomnode.routing import rules, versions
from dicomnode.routing.rules import RuleInvalid

RULE = rules.parse_rule(
    {"name": "ct-montage", "when": {"attr": "Modality", "equals": "CT"}, "run": "key_image_montage"}
)


def test_every_edit_is_a_new_version_and_any_version_can_be_restored(sessions) -> None:
    with sessions() as session:
        created = versions.create_rule(session=session, rule=RULE, author="alice", reason="first")
        changed = RULE.model_copy(update={"send_to": ["pacs"]})
        updated = versions.update_rule(session=session, rule=changed, author="bob", reason="send to PACS")
        disabled = versions.set_enabled(session=session, name="ct-montage", enabled=False, author="carol")
        restored = versions.restore_version(session=session, name="ct-montage", version=1, author="dave")
        session.commit()
    assert [v.version for v in (created, updated, disabled, restored)] == [1, 2, 3, 4]
    with sessions() as session:
        history = versions.history(session=session, name="ct-montage")
        current = versions.get_rule(session=session, name="ct-montage")
    assert [(h.action, h.author, h.rule.enabled, h.rule.send_to) for h in history] == [
        ("created", "alice", True, []),
        ("updated", "bob", True, ["pacs"]),
        ("disabled", "carol", False, ["pacs"]),
        ("restored", "dave", True, []),
    ]
    assert history[1].reason == "send to PACS" and history[3].reason == "restored version 1"
    assert current is not None and current.version == 4 and current.rule == RULE
    assert [h.is_current for h in history] == [False, False, False, True]


def test_names_are_unique_and_changes_need_an_author(sessions) -> None:
    with sessions() as session:
        versions.create_rule(session=session, rule=RULE, author="alice")
        with pytest.raises(versions.RuleExists):
            versions.create_rule(session=session, rule=RULE, author="alice")
        with pytest.raises(ValueError, match="author"):
            versions.update_rule(session=session, rule=RULE, author=" ")
        with pytest.raises(versions.RuleNotFound):
            versions.restore_version(session=session, name="ct-montage", version=9, author="alice")
        with pytest.raises(versions.RuleNotFound):
            versions.update_rule(session=session, rule=RULE.model_copy(update={"name": "other"}), author="alice")


def test_a_deleted_rule_stops_routing_keeps_its_versions_and_can_come_back(sessions) -> None:
    with sessions() as session:
        versions.create_rule(session=session, rule=RULE, author="alice")
        versions.delete_rule(session=session, name="ct-montage", author="alice", reason="retired")
        session.commit()
    with sessions() as session:
        assert versions.current_rules(session=session) == []
        assert [h.action for h in versions.history(session=session, name="ct-montage")] == ["created", "deleted"]
        again = versions.create_rule(session=session, rule=RULE, author="bob")
        session.commit()
    assert again.version == 3


def test_the_rules_file_seeds_an_empty_table_only(sessions, tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(rules.dump_rules([RULE, RULE.model_copy(update={"name": "second"})]))
    with sessions() as session:
        assert versions.seed_if_empty(session=session, path=path) == 2
        assert versions.seed_if_empty(session=session, path=path) == 0
        session.commit()
    with sessions() as session:
        assert [(s.name, s.action, s.author) for s in versions.current_rules(session=session)] == [
            ("ct-montage", "imported", "dicomnode"), ("second", "imported", "dicomnode")]


def test_the_shipped_rules_file_is_valid(sessions) -> None:
    path = Path(__file__).resolve().parents[3] / "conf" / "rules.yaml"
    with sessions() as session:
        assert versions.seed_if_empty(session=session, path=path) >= 1
        assert all(s.rule.enabled for s in versions.current_rules(session=session))


def test_an_invalid_rules_file_seeds_nothing(sessions, tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text("- name: Bad Name\n  when: {attr: Modality, equals: CT}\n  run: key_image_montage\n")
    with sessions() as session, pytest.raises(RuleInvalid) as caught:
        versions.seed_if_empty(session=session, path=path)
    assert caught.value.errors[0].path == "rules[0].name"


def test_export_then_import_changes_nothing(sessions) -> None:
    with sessions() as session:
        versions.import_rules(session=session, rules=[RULE], author="alice")
        exported = versions.export_rules(session=session)
        summary = versions.import_rules(session=session, rules=rules.load_rules(exported), author="alice")
        assert (summary.created, summary.updated, summary.unchanged) == ([], [], ["ct-montage"])
        replaced = versions.import_rules(session=session, rules=[], author="alice", replace=True)
        assert replaced.deleted == ["ct-montage"]
