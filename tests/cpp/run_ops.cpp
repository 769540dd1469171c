// run_ops.cpp: a plain C++ LibTorch program that uses lrnn the way a deployment would — it
// links liblrnn_ops, calls lrnn::linear_scan through the dispatcher, and runs an AOTInductor
// package (and a TorchScript file) made from Python, writing every result for the caller
// (tests/python/test_deployment.py) to compare with Python's.
//
//   lrnn_cpp_example <dir>   reads raw inputs <dir>/{a,b,h0}.bin (format: read_tensor below),
//                            <dir>/model.pt2 and <dir>/scripted.pt; writes <dir>/*_cpp.bin
#include <torch/csrc/inductor/aoti_package/model_package_loader.h>
#include <torch/script.h>
#include <torch/torch.h>

#include <fstream>
#include <iostream>
#include <vector>

extern "C" void lrnn_ops_init(void);

namespace {

// Raw float32 file: int64 rank, int64 sizes[rank], then the data.
torch::Tensor read_tensor(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open " + path);
  int64_t rank = 0;
  in.read(reinterpret_cast<char*>(&rank), sizeof rank);
  std::vector<int64_t> sizes(rank);
  in.read(reinterpret_cast<char*>(sizes.data()), rank * sizeof(int64_t));
  torch::Tensor t = torch::empty(sizes, torch::kFloat32);
  in.read(reinterpret_cast<char*>(t.data_ptr<float>()), t.numel() * sizeof(float));
  return t;
}

void write_tensor(const std::string& path, const torch::Tensor& t_in) {
  const torch::Tensor t = t_in.to(torch::kCPU, torch::kFloat32).contiguous();
  std::ofstream out(path, std::ios::binary);
  const int64_t rank = t.dim();
  out.write(reinterpret_cast<const char*>(&rank), sizeof rank);
  out.write(reinterpret_cast<const char*>(t.sizes().data()), rank * sizeof(int64_t));
  out.write(reinterpret_cast<const char*>(t.data_ptr<float>()), t.numel() * sizeof(float));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: " << argv[0] << " <dir>\n";
    return 2;
  }
  lrnn_ops_init();
  const std::string dir = argv[1];
  const torch::Tensor a = read_tensor(dir + "/a.bin"), b = read_tensor(dir + "/b.bin"),
                      h0 = read_tensor(dir + "/h0.bin");

  // 1. The op through the dispatcher, as any LibTorch code would call it.
  auto op = c10::Dispatcher::singleton()
                .findSchemaOrThrow("lrnn::linear_scan", "")
                .typed<std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&,
                                                          const std::optional<at::Tensor>&, bool)>();
  auto [h, h_last] = op.call(a, b, h0, false);
  write_tensor(dir + "/h_op_cpp.bin", h);
  write_tensor(dir + "/h_last_op_cpp.bin", h_last);

  // 2. The AOTInductor package compiled from an exported Python model that calls the op.
  torch::inductor::AOTIModelPackageLoader loader(dir + "/model.pt2");
  std::vector<torch::Tensor> outputs = loader.run({a, b, h0});
  write_tensor(dir + "/y_aoti_cpp.bin", outputs.at(0));

  // 3. A TorchScript function that calls the op.
  torch::jit::Module scripted = torch::jit::load(dir + "/scripted.pt");
  const torch::Tensor y = scripted.forward({a, b, h0}).toTensor();
  write_tensor(dir + "/y_script_cpp.bin", y);
  std::cout << "lrnn_cpp_example: ok\n";
  return 0;
}
