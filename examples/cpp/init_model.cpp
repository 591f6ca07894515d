// Initialises a small libtorch model the way a Caffe net description would, with
// nspl_filler's C++ API: one filler per parameter (FillerParameter + GetFiller), plus the
// fill functions with an explicit seed, an offset, or a torch generator.
//
//   init_model [VALUES_FILE]
//
// Prints one line per tensor (shape, dtype, mean, std, min, max). With VALUES_FILE, also writes
// each tensor's values there, one line per tensor: its name, then its values in row-major
// order as hexadecimal floats (exact).
#include <ATen/CPUGeneratorImpl.h>
#include <nspl_filler/filler.h>
#include <torch/torch.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

namespace {

// The parameters of a small network: two convolutions, a 2x bilinear upsampling of each
// channel (a grouped transposed convolution) and a linear layer.
struct Net : torch::nn::Module {
  Net()
      : conv1(register_module("conv1", torch::nn::Conv2d(torch::nn::Conv2dOptions(3, 8, 5)))),
        conv2(register_module("conv2", torch::nn::Conv2d(torch::nn::Conv2dOptions(8, 16, 3)))),
        up(register_module("up", torch::nn::ConvTranspose2d(
                                     torch::nn::ConvTranspose2dOptions(16, 16, 4).stride(2).padding(1).groups(16).bias(false)))),
        fc(register_module("fc", torch::nn::Linear(64, 10))) {}

  torch::nn::Conv2d conv1, conv2;
  torch::nn::ConvTranspose2d up;
  torch::nn::Linear fc;
};

// A FillerParameter of `type`, with Caffe's defaults for the rest.
nspl::FillerParameter filler(std::string type) {
  nspl::FillerParameter p;
  p.type = std::move(type);
  return p;
}

}  // namespace

int main(int argc, char** argv) {
  Net net;

  // NSPL for both convolutions from one seeded filler: conv2 continues conv1's stream.
  nspl::FillerParameter weights;
  weights.type = "nspl";
  weights.seed = 0;
  auto weight_filler = nspl::GetFiller(weights);
  weight_filler->Fill(net.conv1->weight);
  weight_filler->Fill(net.conv2->weight);

  nspl::FillerParameter bias = filler("constant");
  bias.value = 0.1;
  nspl::GetFiller(bias)->Fill(net.conv1->bias);
  nspl::GetFiller(bias)->Fill(net.conv2->bias);

  nspl::GetFiller(filler("bilinear"))->Fill(net.up->weight);

  // Sparse gaussian: each input of fc reaches 3 of its 10 outputs on average.
  nspl::FillerParameter sparse = filler("gaussian");
  sparse.std = 0.01;
  sparse.sparse = 3;
  sparse.seed = 2;
  nspl::GetFiller(sparse)->Fill(net.fc->weight);

  nspl::FillerParameter uniform = filler("uniform");
  uniform.min = -0.1;
  uniform.max = 0.1;
  uniform.seed = 3;
  nspl::GetFiller(uniform)->Fill(net.fc->bias);

  // The rest of Caffe's family, and other dtypes.
  nspl::FillerParameter unitball = filler("positive_unitball");
  unitball.seed = 4;
  torch::Tensor rows = torch::empty({4, 6});
  nspl::GetFiller(unitball)->Fill(rows);

  nspl::FillerParameter msra = filler("msra");
  msra.variance_norm = nspl::VarianceNorm::Average;
  msra.seed = 5;
  torch::Tensor kernel = torch::empty({6, 4, 3, 3}, torch::kFloat64);
  // Each type is also a class of its own, under Caffe's name.
  nspl::MSRAFiller msra_filler(msra);
  msra_filler.Fill(kernel);

  nspl::FillerParameter power_law = filler("symmetric_power_law");
  power_law.alpha = 2.0;
  power_law.min = 0.01;
  power_law.max = 1.0;
  power_law.seed = 6;
  torch::Tensor embedding = torch::empty({32, 16}, torch::kBFloat16);
  nspl::GetFiller(power_law)->Fill(embedding);

  nspl::FillerParameter truncated = filler("trunc_normal");
  truncated.std = 0.02;
  truncated.min = -0.04;
  truncated.max = 0.04;
  truncated.seed = 10;
  torch::Tensor patches = torch::empty({5, 8}, torch::kFloat16);
  nspl::GetFiller(truncated)->Fill(patches);

  // The fill functions: NSPL on fan_out with alpha = 2; a normal from block 100 of seed 8;
  // a uniform whose stream comes from a torch generator seeded 9.
  torch::Tensor projection = torch::empty({12, 5});
  nspl::nspl_(projection, {.mode = nspl::VarianceNorm::FanOut, .alpha = 2.0}, nspl::Stream::Seeded(7));
  torch::Tensor noise = torch::empty({7, 3}, torch::kFloat16);
  nspl::normal_(noise, 0.5, nspl::Stream::Seeded(8, 100));
  torch::Tensor offsets = torch::empty({9});
  nspl::symmetric_uniform_(offsets, 2.0, nspl::Stream::FromGenerator(at::make_generator<at::CPUGeneratorImpl>(9)));
  // A truncated normal in its far upper tail, [3σ, 8σ], in float64.
  torch::Tensor tail = torch::empty({6, 5}, torch::kFloat64);
  nspl::trunc_normal_(tail, {.mean = 1.0, .std = 0.5, .a = 2.5, .b = 5.0}, nspl::Stream::Seeded(11, 3));

  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  for (const auto& item : net.named_parameters()) tensors.emplace_back(item.key(), item.value());
  tensors.emplace_back("positive_unitball", rows);
  tensors.emplace_back("msra", kernel);
  tensors.emplace_back("symmetric_power_law", embedding);
  tensors.emplace_back("nspl_", projection);
  tensors.emplace_back("normal_", noise);
  tensors.emplace_back("symmetric_uniform_", offsets);
  tensors.emplace_back("trunc_normal", patches);
  tensors.emplace_back("trunc_normal_", tail);

  std::ofstream values;
  if (argc > 1) values.open(argv[1]);
  values << std::hexfloat;
  for (const auto& [name, tensor] : tensors) {
    const torch::Tensor t = tensor.detach().to(torch::kFloat64).contiguous();
    std::printf("%-20s %-16s %-9s mean %+.5f std %.5f min %+.5f max %+.5f\n", name.c_str(),
                c10::str(tensor.sizes()).c_str(), c10::toString(tensor.scalar_type()), t.mean().item<double>(),
                t.std().item<double>(), t.min().item<double>(), t.max().item<double>());
    if (!values.is_open()) continue;
    values << name;
    const double* data = t.data_ptr<double>();
    for (int64_t i = 0; i < t.numel(); ++i) values << ' ' << data[i];
    values << '\n';
  }
  return values.is_open() && !values ? 1 : 0;
}
