"""A model in the local hub as the Space's page shows it: card, files, and nothing its reader may not see."""

from __future__ import annotations

import pytest

from factory.base.errors import UserError
from factory.base.sizes import size_text
from factory.frontdoor.model_page import download_copy, local_model
from factory.hub.local import LocalHub


def _model(tmp_path, text="---\nlicense: mit\n---\n# alice/songs\nA card.\n"):
    folder = tmp_path / "model"
    (folder / "sub").mkdir(parents=True)
    (folder / "README.md").write_text(text)
    (folder / "config.json").write_text("{}")
    (folder / "sub" / "extra.txt").write_text("x" * 1500)
    return folder


def test_the_page_has_the_card_without_its_metadata_and_the_files_with_sizes(tmp_path):
    hub = LocalHub(tmp_path / "hub")
    hub.publish("alice/songs", _model(tmp_path), "first")
    page = local_model(LocalHub(tmp_path / "hub", reader="hf:bob"), "alice/songs")
    assert page.card == "# alice/songs\nA card." and "license" not in page.card
    assert dict(page.files) == {"README.md": len("---\nlicense: mit\n---\n# alice/songs\nA card.\n"),
                                "config.json": 2, "sub/extra.txt": 1500}  # no hub bookkeeping files
    assert size_text(1500) == "1.5 KB" and size_text(12) == "12 B"
    assert f'folder = "{page.folder}"' in page.snippet(str(page.folder))
    assert (page.folder / "config.json").is_file()
    copy = download_copy(page, "sub/extra.txt")
    assert copy.read_text() == "x" * 1500 and copy.parent != page.folder
    for name in ("../../../etc/passwd", "/etc/passwd", "missing.bin"):
        with pytest.raises(UserError, match="is not a file of alice/songs"):
            download_copy(page, name)


def test_a_private_model_is_its_owners_alone(tmp_path):
    LocalHub(tmp_path / "hub").publish("alice/secret", _model(tmp_path), "first", private=True, identity="hf:alice")
    assert local_model(LocalHub(tmp_path / "hub", reader="hf:alice"), "alice/secret").repo_id == "alice/secret"
    for repo in ("alice/secret", "alice/../alice/secret", "nobody/here"):
        with pytest.raises(UserError) as refused:
            local_model(LocalHub(tmp_path / "hub", reader="hf:bob"), repo)
        assert str(tmp_path) not in str(refused.value) and "factory demo" not in str(refused.value)
