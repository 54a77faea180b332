"""Finding releases however they were unpacked, and reading their CSVs strictly."""
import unicodedata
import zipfile

import pytest

from core.errors import UserError
from trainer.aihub import (
    COLUMNS,
    RELEASES,
    decode_csv,
    find_releases,
    load_release,
    name_key,
    read_csv,
)

HEADER = ",".join(COLUMNS)
ROW = "5f3ca01b8a3c1005aa97c4d3,나 요즘 너무 우울해 죽겠어.,sadness,sadness,2,sadness,2,sadness,2,sadness,1,sadness,2,48,female"


def write_csv(path, text, encoding="cp949"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))


def write_zip(path, names):
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as archive:
        for name in names:
            archive.writestr(name, b"RIFF")


def test_name_key_tells_releases_apart():
    assert name_key("5차년도_2차.csv") == name_key("5차년도 2차") == name_key("5차년도-2차.ZIP")
    assert name_key("5차년도.csv") != name_key("5차년도_2차.csv")
    assert name_key(unicodedata.normalize("NFD", "4차년도.zip")) == name_key("4차년도")


def test_flat_layout(tmp_path):
    for release in RELEASES:
        write_csv(tmp_path / f"{release}.csv", HEADER + "\n")
        write_zip(tmp_path / f"{release}.zip", ["a.wav"])
    found = find_releases(tmp_path)
    assert list(found) == list(RELEASES)
    assert found["5차년도"].csvs == [tmp_path / "5차년도.csv"]
    assert found["5차년도_2차"].zips == [tmp_path / "5차년도_2차.zip"]


def test_folder_per_release_with_zip_or_wavs_and_wrapper_folder(tmp_path):
    root = tmp_path / "dataset263"
    write_csv(root / "4차년도" / "meta.csv", HEADER + "\n")
    write_zip(root / "4차년도" / "wav.zip", ["x/1.wav", "__MACOSX/x/._1.wav", "x/._1.wav"])
    nfd = unicodedata.normalize("NFD", "5차년도 2차")  # a macOS unzip, with a space
    write_csv(root / nfd / "5차년도_2차.csv", HEADER + "\n", "utf-8")
    (root / nfd / "wavs" / "sub").mkdir(parents=True)
    (root / nfd / "wavs" / "sub" / "2.wav").write_bytes(b"RIFF")
    (root / nfd / "wavs" / ".hidden.wav").write_bytes(b"RIFF")
    found = find_releases(tmp_path)  # the wrapper folder is searched because tmp_path holds only it
    assert list(found) == ["4차년도", "5차년도_2차"]
    release = load_release(found["4차년도"])
    assert list(release.audio) == ["1"]
    assert release.audio["1"].member == "x/1.wav"
    second = load_release(found["5차년도_2차"])
    assert list(second.audio) == ["2"] and second.audio["2"].member is None


def test_csv_next_to_a_wav_folder(tmp_path):
    write_csv(tmp_path / "4차년도.csv", HEADER + "\n")
    (tmp_path / "4차년도").mkdir()
    (tmp_path / "4차년도" / "abc.wav").write_bytes(b"RIFF")
    release = load_release(find_releases(tmp_path)["4차년도"])
    assert list(release.audio) == ["abc"]
    assert release.audio_containers == [tmp_path / "4차년도"]


def test_missing_folder_and_no_release(tmp_path):
    with pytest.raises(UserError, match="no such folder"):
        find_releases(tmp_path / "nope")
    (tmp_path / "other.csv").write_text("x")
    (tmp_path / "photos").mkdir()
    with pytest.raises(UserError, match=r"no AI Hub release found.*other\.csv"):
        find_releases(tmp_path)


def test_audio_without_csv_and_two_csvs_are_errors(tmp_path):
    write_zip(tmp_path / "4차년도.zip", ["a.wav"])
    with pytest.raises(UserError, match="4차년도: audio found but no CSV"):
        find_releases(tmp_path)
    write_csv(tmp_path / "4차년도.csv", HEADER + "\n")
    write_csv(tmp_path / "4차년도" / "copy.csv", HEADER + "\n")
    with pytest.raises(UserError, match="2 CSVs"):
        find_releases(tmp_path)


def test_corrupt_zip_is_an_error_naming_it(tmp_path):
    write_csv(tmp_path / "4차년도.csv", HEADER + "\n")
    (tmp_path / "4차년도.zip").write_bytes(b"not a zip")
    with pytest.raises(UserError, match=r"4차년도\.zip: cannot read this ZIP"):
        load_release(find_releases(tmp_path)["4차년도"])


@pytest.mark.parametrize("encoding,reported", [("cp949", "cp949"), ("utf-8", "utf-8"), ("utf-8-sig", "utf-8-sig")])
def test_encodings_are_detected_and_reported(tmp_path, encoding, reported):
    path = tmp_path / "4차년도.csv"
    write_csv(path, HEADER + "\n" + ROW + "\n", encoding)
    got, rows, _, _ = read_csv(path, "4차년도")
    assert got == reported
    assert rows[0].text == "나 요즘 너무 우울해 죽겠어."
    assert rows[0].wav_id == "5f3ca01b8a3c1005aa97c4d3"


def test_undecodable_csv_names_the_file(tmp_path):
    path = tmp_path / "4차년도.csv"
    path.write_bytes(HEADER.encode("utf-16"))
    with pytest.raises(UserError, match=r"4차년도\.csv: cannot decode as utf-8 or cp949"):
        decode_csv(path)
    bom_then_cp949 = tmp_path / "b.csv"
    bom_then_cp949.write_bytes(b"\xef\xbb\xbf" + "우울".encode("cp949"))
    with pytest.raises(UserError, match="cannot decode as utf-8-sig"):
        decode_csv(bom_then_cp949)


def test_header_with_stray_spaces_tabs_and_other_order(tmp_path):
    cells = [f" {c} " for c in COLUMNS]
    cells[10] = "4번 감정세기"  # with the space the official header lacks
    cells[0], cells[1] = cells[1], cells[0]
    row = ROW.split(",")
    row[0], row[1] = row[1], row[0]
    path = tmp_path / "x.csv"
    write_csv(path, "\t".join(cells) + "\n" + "\t".join(row) + "\n")
    _, rows, _, unexpected = read_csv(path, "4차년도")
    assert unexpected == []
    assert rows[0].wav_id == "5f3ca01b8a3c1005aa97c4d3"
    assert rows[0].annotations[3] == ("sadness", "1")
    assert (rows[0].age, rows[0].gender) == ("48", "female")


def test_wrong_header_says_what_is_missing_and_unexpected(tmp_path):
    path = tmp_path / "4차년도.csv"
    cells = list(COLUMNS)
    cells[2] = "상황설명"
    write_csv(path, ",".join(cells[:-1]) + "\n")
    with pytest.raises(UserError) as info:
        read_csv(path, "4차년도")
    message = str(info.value)
    assert "4차년도.csv" in message
    assert "missing columns ['상황', '성별']" in message
    assert "unexpected columns ['상황설명']" in message


def test_extra_columns_are_reported_and_long_rows_are_malformed(tmp_path):
    path = tmp_path / "x.csv"
    write_csv(path, HEADER + ",비고\n" + ROW + ",메모\n" + ROW + ",메모,extra\n\n")
    _, rows, malformed, unexpected = read_csv(path, "4차년도")
    assert unexpected == ["비고"] and len(rows) == 1 and malformed == [(3, "5f3ca01b8a3c1005aa97c4d3")]

