// The fusion model on --dataset unihan: a short run on a Unihan-like directory this test writes
// (core/data/unihan_test_writer.h: the glyph and the definition both give away the radical), its
// eval records (the loss falls, accuracy above chance), predict's top radicals on the trained
// checkpoint, and one-line errors for missing files and an unknown character. No timing is checked.
#include <string>
#include <vector>

#include "core/data/unihan_test_writer.h"

#include "cli_test_util.h"

namespace dtrain::cli_test {
namespace {

class Fusion : public CliTest {
 protected:
  fs::path write_unihan() {
    const fs::path data = dir_ / "unihan";
    test::write_synthetic_unihan(data, 640);
    return data;
  }
  std::vector<std::string> tiny(const fs::path& data, const std::string& modalities) {
    return {"--model",        "fusion",   "--dataset",    "unihan", "--data-dir",     data.string(),
            "--modalities",   modalities, "--model-size", "tiny",   "--seq-len",      "12",
            "--dim",          "32",       "--heads",      "2",      "--mlp-dim",      "64",
            "--batch-size",   "32",       "--lr",         "0.003",  "--warmup-steps", "5",
            "--eval-batches", "0",        "--threads",    "1",      "--progress",     "0"};
  }
};

TEST_F(Fusion, ShortRunLearnsTheRadicalThenPredicts) {
  const fs::path data = write_unihan();
  const fs::path metrics = dir_ / "metrics.jsonl", run_dir = dir_ / "run";
  std::vector<std::string> args = tiny(data, "both");
  args.insert(args.end(), {"--steps", "60", "--eval-interval", "20", "--metrics-file",
                           metrics.string(), "--checkpoint-dir", run_dir.string()});
  RunResult r = train(args);
  ASSERT_EQ(r.exit_code, 0) << r.err << r.out;
  const std::vector<nlohmann::json> evals = eval_records(metrics);
  ASSERT_GE(evals.size(), 2u) << read_text(metrics);
  // Eight radicals, each marked in the glyph and named by the definition's first word: 60 steps take
  // the loss to well under half the first eval's and the accuracy far above chance (1/8).
  expect_loss_falls(evals, 0.5);
  EXPECT_GT(evals.back()["accuracy"].get<double>(), 0.5) << evals.back().dump();

  // U+4E05 is character 5 of the synthetic set: radical 85 (water) in glyph and definition.
  RunResult p = run({"predict", "--resume", run_dir.string(), "--text", "丅", "--threads", "1"});
  ASSERT_EQ(p.exit_code, 0) << p.err << p.out;
  EXPECT_EQ(count_lines(p.out, "radical "), 6) << p.out;  // the Unihan line and five predictions
  EXPECT_NE(p.out.find("U+4E05 (Unihan: radical 85"), std::string::npos) << p.out;
  std::istringstream lines(p.out);
  std::string header, top;
  std::getline(lines, header);
  std::getline(lines, top);
  EXPECT_NE(top.find("  radical 85"), std::string::npos) << p.out;

  RunResult absent =
      run({"predict", "--resume", run_dir.string(), "--text", "河", "--threads", "1"});
  EXPECT_NE(absent.exit_code, 0);
  EXPECT_NE(absent.err.find("U+6CB3"), std::string::npos) << absent.err;
  EXPECT_EQ(std::count(absent.err.begin(), absent.err.end(), '\n'), 1) << absent.err;
}

TEST_F(Fusion, EachModalityTrains) {
  const fs::path data = write_unihan();
  for (const std::string modalities : {"image", "text"}) {
    std::vector<std::string> args = tiny(data, modalities);
    args.insert(args.end(), {"--steps", "10"});
    RunResult r = train(args);
    ASSERT_EQ(r.exit_code, 0) << modalities << ": " << r.err << r.out;
    EXPECT_NE(r.out.find("accuracy"), std::string::npos) << r.out;
  }
}

TEST_F(Fusion, MissingOrCorruptFilesAreOneLineErrors) {
  const fs::path data = write_unihan();
  fs::remove(data / "unifont.hex");
  RunResult r = train(tiny(data, "both"));
  expect_one_line_error(r, {(data / "unifont.hex").string(), "unifont"});

  write_unihan();
  test::write_file(data / "Unihan_Readings.txt.bz2", "BZh9 this is not bzip2 data");
  r = train(tiny(data, "both"));
  expect_one_line_error(r, {(data / "Unihan_Readings.txt.bz2").string(), "unicode-data"});
}

}  // namespace
}  // namespace dtrain::cli_test
